// SRL, the Streamline Request Language, version 1.
// Normative grammar; ../docs/language.md explains it for users.
// Lexical errors never reach the parser as ANTLR errors: the catch-all
// tokens at the end (UNTERMINATED_STRING, BAD_CHAR) are reported by the
// compiler with a precise position before parsing starts.
grammar Srl;

request   : stmt (';' stmt)* ';'? EOF ;
stmt      : par ;
par       : seq ('|' seq)* ;
seq       : bexpr (edge bexpr)* ;
edge      : selector? '>' ;
selector  : rejected='!'
          | invert='!'? range (',' range)*
          ;
range     : lo=classv (':' hi=classv)? ;
// A class number, or a name the upstream filter gives one (`(dns) AAAA>`).
classv    : INT | IDENT ;

bexpr     : bor ;
bor       : band (OR band)* ;
band      : bnot (AND bnot)* ;
// A loop instead of recursion: a chain of `not` cannot exhaust the stack.
bnot      : NOT* atom ;
atom      : '(' IDENT (',' option)* ')'   # filterAtom
          | '(' par ')'                   # groupAtom
          ;
option    : IDENT '=' value ;
value     : IDENT | INT | STRING | CIDR ;

LPAREN    : '(' ;
RPAREN    : ')' ;
GT        : '>' ;
BANG      : '!' ;
COLON     : ':' ;
COMMA     : ',' ;
EQ        : '=' ;
SEMI      : ';' ;
PIPE      : '|' ;
AND       : 'and' ;
OR        : 'or' ;
NOT       : 'not' ;
// An IPv4 address with an optional prefix length, or an IPv6 address (at
// least two colons, so that a class range like 22:23 stays two INTs).
CIDR      : DEC '.' DEC '.' DEC '.' DEC ('/' DEC)?
          | HEX* ':' HEX* ':' (HEX | ':' | '.')* ('/' DEC)?
          ;
INT       : DEC ;
IDENT     : [A-Za-z_] [A-Za-z0-9_.\-]* ;
STRING    : '"' ( '\\' ~[\r\n] | ~["\\\r\n] )* '"' ;
UNTERMINATED_STRING : '"' ( '\\' ~[\r\n] | ~["\\\r\n] )* ;
COMMENT   : '#' ~[\r\n]* -> skip ;
WS        : [ \t\r\n\f]+ -> skip ;
BAD_CHAR  : . ;

fragment DEC : [0-9]+ ;
fragment HEX : [0-9a-fA-F] ;
