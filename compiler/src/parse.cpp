// Pass "parse": request text -> syntax tree.
//
// Before ANTLR sees the text, cheap linear checks bound what it will be asked
// to do (size, UTF-8, nesting depth), so that no input can exhaust the stack
// or make the parser slow. Lexical errors come from catch-all tokens, and the
// first syntax error stops the parse: what ANTLR reports after recovering is
// mostly noise.
#include "parse.h"

#include <charconv>
#include <exception>

#include "SrlLexer.h"
#include "SrlParser.h"
#include "antlr4-runtime.h"
#include "srl/compiler/utf8.h"

namespace srl::compiler {
namespace {

using grammar::SrlLexer;
using grammar::SrlParser;

Loc token_loc(const antlr4::Token* t) {
  Loc loc;
  loc.line = static_cast<std::uint32_t>(t->getLine());
  loc.col = static_cast<std::uint32_t>(t->getCharPositionInLine()) + 1;
  if (t->getType() == antlr4::Token::EOF) {
    loc.length = 1;
  } else {
    loc.length = static_cast<std::uint32_t>(utf8::length(t->getText()));
    // A token spanning lines is underlined to the end of its first line.
    if (const auto nl = t->getText().find('\n'); nl != std::string::npos)
      loc.length = static_cast<std::uint32_t>(utf8::length(t->getText().substr(0, nl)));
  }
  if (loc.length == 0) loc.length = 1;
  return loc;
}

// From the first token of `from` through the last of `to`, on one line.
Loc span_loc(const antlr4::Token* from, const antlr4::Token* to) {
  Loc loc = token_loc(from);
  const Loc end = token_loc(to);
  if (end.line == loc.line && end.col >= loc.col) loc.length = end.col + end.length - loc.col;
  return loc;
}

std::string describe_token_type(std::size_t type, const antlr4::dfa::Vocabulary& vocabulary) {
  switch (type) {
    case antlr4::Token::EOF:
      return "end of input";
    case SrlLexer::INT:
      return "a number";
    case SrlLexer::IDENT:
      return "a name";
    case SrlLexer::STRING:
      return "a string";
    case SrlLexer::CIDR:
      return "an address";
    case SrlLexer::AND:
      return "'and'";
    case SrlLexer::OR:
      return "'or'";
    case SrlLexer::NOT:
      return "'not'";
    default:
      break;
  }
  // Literal tokens: the vocabulary's display name is the quoted literal.
  return vocabulary.getDisplayName(type);
}

std::string describe_offending(const antlr4::Token* t) {
  switch (t->getType()) {
    case antlr4::Token::EOF:
      return "end of input";
    case SrlLexer::INT:
      return "number " + t->getText();
    case SrlLexer::IDENT:
      return "name '" + t->getText() + "'";
    case SrlLexer::STRING:
      return "string " + utf8::printable(t->getText());
    case SrlLexer::CIDR:
      return "address " + t->getText();
    default:
      return "'" + utf8::printable(t->getText()) + "'";
  }
}

std::string join_alternatives(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

// What the parser could have taken, in words. Sets that stand for a whole
// construct get one phrase instead of a list of tokens.
std::string describe_expected(const antlr4::misc::IntervalSet& set,
                              const antlr4::dfa::Vocabulary& vocabulary) {
  auto has = [&](std::size_t t) { return set.contains(t); };
  std::vector<std::string> items;
  std::vector<bool> covered(SrlLexer::BAD_CHAR + 1, false);
  auto cover = [&](std::initializer_list<std::size_t> ts) {
    for (auto t : ts)
      covered[t] = true;
  };
  if (has(SrlLexer::IDENT) && has(SrlLexer::INT) && has(SrlLexer::STRING) && has(SrlLexer::CIDR)) {
    items.push_back("an option value (a name, number, string or address)");
    cover({SrlLexer::IDENT, SrlLexer::INT, SrlLexer::STRING, SrlLexer::CIDR});
  }
  if (has(SrlLexer::LPAREN) && has(SrlLexer::NOT) && !has(SrlLexer::GT)) {
    // '(' and 'not' and nothing of an edge: the start of an element.
    items.push_back("a filter such as '(tcp)'");
    cover({SrlLexer::LPAREN, SrlLexer::NOT});
  }
  for (std::size_t t = 0; t <= SrlLexer::BAD_CHAR; ++t) {
    if (t == SrlLexer::COMMENT || t == SrlLexer::WS || t == SrlLexer::BAD_CHAR ||
        t == SrlLexer::UNTERMINATED_STRING || covered[t] || !has(t))
      continue;
    items.push_back(describe_token_type(t, vocabulary));
  }
  if (has(antlr4::Token::EOF)) items.push_back("end of input");
  return join_alternatives(items);
}

struct SyntaxErrorSeen : std::exception {};

// What may follow a complete element: ANTLR has left the loops that would
// have taken these by the time it reports, so its own set says only ';'.
constexpr const char* kAfterElement =
    "'>', a selector such as '22>', '|', ';', 'and', 'or' or end of input";

class SyntaxErrorListener final : public antlr4::BaseErrorListener {
 public:
  SyntaxErrorListener(Diagnostics& diags, antlr4::CommonTokenStream& tokens)
      : diags_(diags), tokens_(tokens) {}

  void syntaxError(antlr4::Recognizer* recognizer, antlr4::Token* offending, std::size_t,
                   std::size_t, const std::string&, std::exception_ptr) override {
    auto* parser = dynamic_cast<antlr4::Parser*>(recognizer);
    if (parser == nullptr || offending == nullptr) {
      diags_.error({}, "syntax error");
      throw SyntaxErrorSeen();
    }
    report(*parser, offending);
    throw SyntaxErrorSeen();
  }

 private:
  // The token before `t` on the default channel, if any.
  const antlr4::Token* previous(const antlr4::Token* t) {
    for (auto i = static_cast<std::ptrdiff_t>(t->getTokenIndex()) - 1; i >= 0; --i) {
      const antlr4::Token* p = tokens_.get(static_cast<std::size_t>(i));
      if (p->getChannel() == antlr4::Token::DEFAULT_CHANNEL) return p;
    }
    return nullptr;
  }

  // The innermost '(' before `t` that no ')' closes.
  const antlr4::Token* unclosed_paren(const antlr4::Token* t) {
    std::vector<const antlr4::Token*> open;
    for (std::size_t i = 0; i < t->getTokenIndex(); ++i) {
      const antlr4::Token* p = tokens_.get(i);
      if (p->getType() == SrlLexer::LPAREN) open.push_back(p);
      if (p->getType() == SrlLexer::RPAREN && !open.empty()) open.pop_back();
    }
    return open.empty() ? nullptr : open.back();
  }

  void report(antlr4::Parser& parser, const antlr4::Token* offending) {
    const auto type = offending->getType();
    const antlr4::Token* prev = previous(offending);
    if (type == antlr4::Token::EOF && prev == nullptr) {
      diags_.error(Loc{1, 1, 1}, "empty request; expected a filter such as '(tcp)'");
      return;
    }
    const auto expected_set = parser.getExpectedTokens();
    std::string expected = describe_expected(expected_set, parser.getVocabulary());
    Loc loc = token_loc(offending);
    std::string what = "unexpected " + describe_offending(offending);
    const std::size_t prev_type = prev != nullptr ? prev->getType() : 0;

    // At the end of input, point just past the last token rather than at
    // the empty line that may follow it.
    if (type == antlr4::Token::EOF) {
      loc = token_loc(prev);
      loc.col += loc.length;
      loc.length = 1;
      what = "unexpected end of input after '" + utf8::printable(prev->getText()) + "'";
    }

    bool only_end = !expected_set.isEmpty() && prev_type != SrlLexer::LPAREN &&
                    prev_type != SrlLexer::COMMA && prev_type != SrlLexer::EQ;
    for (auto t : expected_set.toList())
      if (t != SrlLexer::SEMI && t != static_cast<ssize_t>(antlr4::Token::EOF) &&
          t != SrlLexer::RPAREN && t != SrlLexer::PIPE)
        only_end = false;

    if (type == SrlLexer::SEMI && prev_type == SrlLexer::SEMI) {
      diags_.error(loc, "empty statement between ';' and ';'; expected a filter such as '(tcp)'");
      return;
    }
    if (type == SrlLexer::RPAREN && unclosed_paren(offending) == nullptr) {
      diags_.error(loc, "unmatched ')': no '(' is open; expected " + std::string(kAfterElement));
      return;
    }
    if (prev_type == SrlLexer::LPAREN && type != antlr4::Token::EOF) {
      std::string msg = what +
                        " after '('; expected a filter name such as (tcp) or a group such "
                        "as ((tcp) | (udp))";
      if (type == SrlLexer::STRING) msg += "; filter names are written without quotes";
      if (type == SrlLexer::AND || type == SrlLexer::OR || type == SrlLexer::NOT)
        msg += "; '" + offending->getText() + "' is a keyword";
      diags_.error(loc, msg);
      return;
    }
    if (only_end && type != antlr4::Token::EOF) {
      std::string msg = what + "; expected " + kAfterElement;
      if (expected_set.contains(std::size_t{SrlLexer::RPAREN}) &&
          unclosed_paren(offending) != nullptr)
        msg = what + "; expected ')' or " + kAfterElement;
      if (type == SrlLexer::LPAREN) msg += " (filters in a pipeline are joined by '>')";
      diags_.error(loc, msg);
      return;
    }
    if (prev_type == SrlLexer::COMMA && expected_set.contains(std::size_t{SrlLexer::IDENT}) &&
        expected_set.size() == 1) {
      expected = "an option name such as file=...";
    }
    std::string msg = what;
    if (!expected.empty()) msg += "; expected " + expected;
    // `expr=udp port 53`: a value with spaces that lacks its quotes.
    if ((type == SrlLexer::IDENT || type == SrlLexer::INT) &&
        (prev_type == SrlLexer::IDENT || prev_type == SrlLexer::INT) &&
        expected_set.contains(std::size_t{SrlLexer::COMMA}))
      msg += " (values with spaces need double quotes)";
    auto& d = diags_.error(loc, msg);
    if (type == antlr4::Token::EOF) {
      if (const antlr4::Token* open = unclosed_paren(offending);
          open != nullptr && expected_set.contains(std::size_t{SrlLexer::RPAREN}))
        diags_.note(d, token_loc(open), "'(' opened here is not closed");
    }
  }

  Diagnostics& diags_;
  antlr4::CommonTokenStream& tokens_;
};

// Checks that bound the work of everything after them. Positions are
// computed here by hand because ANTLR has not seen the text yet.
bool precheck(const SourceFile& src, const Limits& limits, Diagnostics& diags) {
  const std::string& text = src.text();
  if (text.size() > limits.max_input_bytes) {
    diags.error(Loc{1, 1, 1}, "request is " + std::to_string(text.size()) +
                                  " bytes; expected at most " +
                                  std::to_string(limits.max_input_bytes) + " bytes");
    return false;
  }
  auto loc_of = [&](std::size_t offset) {
    Loc loc{1, 1, 1};
    for (std::size_t i = 0; i < offset;) {
      if (text[i] == '\n') {
        ++loc.line;
        loc.col = 1;
        ++i;
      } else {
        ++loc.col;
        i += utf8::sequence_length(static_cast<unsigned char>(text[i]));
      }
    }
    return loc;
  };
  if (auto bad = utf8::first_invalid(text)) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[*bad]));
    diags.error(loc_of(*bad),
                std::string("invalid UTF-8 byte ") + hex + "; expected a request in UTF-8 text");
    return false;
  }
  // Parenthesis depth, skipping strings and comments. A string or comment
  // that is not closed is reported later by the lexer.
  std::uint32_t depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '#') {
      while (i < text.size() && text[i] != '\n')
        ++i;
    } else if (c == '"') {
      for (++i; i < text.size() && text[i] != '"' && text[i] != '\n'; ++i)
        if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] != '\n') ++i;
    } else if (c == '(') {
      if (++depth > limits.max_nesting) {
        diags.error(loc_of(i), "parentheses nested more than " +
                                   std::to_string(limits.max_nesting) +
                                   " deep; expected a flatter request");
        return false;
      }
    } else if (c == ')' && depth > 0) {
      --depth;
    }
  }
  return true;
}

// Integers are kept wide and saturate, so that range checks can quote what
// the user wrote without overflow.
std::uint64_t parse_uint(const std::string& digits) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec == std::errc::result_out_of_range) return UINT64_MAX;
  return v;
}

class AstBuilder {
 public:
  explicit AstBuilder(Diagnostics& diags) : diags_(diags) {}

  ast::Request build(SrlParser::RequestContext* ctx) {
    auto root = std::make_unique<ast::Node>(ast::Kind::request, token_loc(ctx->getStart()));
    for (auto* stmt : ctx->stmt())
      root->children.push_back(par(stmt->par()));
    return ast::Request{std::move(root)};
  }

 private:
  std::unique_ptr<ast::Node> par(SrlParser::ParContext* ctx) {
    auto seqs = ctx->seq();
    if (seqs.size() == 1) return seq(seqs[0]);
    auto node = std::make_unique<ast::Node>(ast::Kind::par, token_loc(ctx->getStart()));
    for (auto* s : seqs)
      node->children.push_back(seq(s));
    return node;
  }

  std::unique_ptr<ast::Node> seq(SrlParser::SeqContext* ctx) {
    auto elements = ctx->bexpr();
    if (elements.size() == 1) return bor(elements[0]->bor());
    auto node = std::make_unique<ast::Node>(ast::Kind::seq, token_loc(ctx->getStart()));
    for (auto* e : elements)
      node->children.push_back(bor(e->bor()));
    for (auto* e : ctx->edge())
      node->edges.push_back(edge(e));
    return node;
  }

  ast::Selector edge(SrlParser::EdgeContext* ctx) {
    ast::Selector sel;
    sel.loc = span_loc(ctx->getStart(), ctx->getStop());
    auto* s = ctx->selector();
    if (s == nullptr) return sel;
    if (s->rejected != nullptr) {
      sel.kind = ast::Selector::Kind::rejected;
      return sel;
    }
    sel.invert = s->invert != nullptr;
    for (auto* r : s->range()) {
      ast::Range range;
      range.loc = span_loc(r->getStart(), r->getStop());
      auto bound = [](SrlParser::ClassvContext* c, std::uint64_t& number, std::string& name) {
        if (c->IDENT() != nullptr)
          name = c->getText();
        else
          number = parse_uint(c->getText());
      };
      bound(r->lo, range.lo, range.lo_name);
      if (r->hi != nullptr)
        bound(r->hi, range.hi, range.hi_name);
      else
        range.hi = range.lo, range.hi_name = range.lo_name;
      range.lo_loc = token_loc(r->lo->getStart());
      range.hi_loc = r->hi != nullptr ? token_loc(r->hi->getStart()) : range.lo_loc;
      sel.ranges.push_back(range);
    }
    return sel;
  }

  std::unique_ptr<ast::Node> bor(SrlParser::BorContext* ctx) {
    auto operands = ctx->band();
    if (operands.size() == 1) return band(operands[0]);
    auto node = std::make_unique<ast::Node>(ast::Kind::or_, token_loc(ctx->getStart()));
    for (auto* o : operands)
      node->children.push_back(band(o));
    for (auto* t : ctx->OR())
      node->operator_locs.push_back(token_loc(t->getSymbol()));
    return node;
  }

  std::unique_ptr<ast::Node> band(SrlParser::BandContext* ctx) {
    auto operands = ctx->bnot();
    if (operands.size() == 1) return bnot(operands[0]);
    auto node = std::make_unique<ast::Node>(ast::Kind::and_, token_loc(ctx->getStart()));
    for (auto* o : operands)
      node->children.push_back(bnot(o));
    for (auto* t : ctx->AND())
      node->operator_locs.push_back(token_loc(t->getSymbol()));
    return node;
  }

  std::unique_ptr<ast::Node> bnot(SrlParser::BnotContext* ctx) {
    auto nots = ctx->NOT();
    auto operand = atom(ctx->atom());
    if (nots.empty()) return operand;
    auto node = std::make_unique<ast::Node>(ast::Kind::not_, token_loc(nots[0]->getSymbol()));
    node->not_count = static_cast<std::uint32_t>(nots.size());
    node->children.push_back(std::move(operand));
    return node;
  }

  std::unique_ptr<ast::Node> atom(SrlParser::AtomContext* ctx) {
    if (auto* g = dynamic_cast<SrlParser::GroupAtomContext*>(ctx)) {
      auto node = std::make_unique<ast::Node>(ast::Kind::group, token_loc(g->getStart()));
      node->children.push_back(par(g->par()));
      return node;
    }
    auto* f = dynamic_cast<SrlParser::FilterAtomContext*>(ctx);
    auto node =
        std::make_unique<ast::Node>(ast::Kind::filter, span_loc(f->getStart(), f->getStop()));
    node->ident = f->IDENT()->getText();
    node->ident_loc = token_loc(f->IDENT()->getSymbol());
    for (auto* o : f->option())
      node->options.push_back(option(o));
    return node;
  }

  ast::Option option(SrlParser::OptionContext* ctx) {
    ast::Option opt;
    opt.name = ctx->IDENT()->getText();
    opt.name_loc = token_loc(ctx->IDENT()->getSymbol());
    auto* v = ctx->value();
    const antlr4::Token* t = v->getStart();
    opt.value.loc = token_loc(t);
    switch (t->getType()) {
      case SrlLexer::IDENT:
        opt.value.kind = ast::Value::Kind::ident;
        break;
      case SrlLexer::INT:
        opt.value.kind = ast::Value::Kind::integer;
        break;
      case SrlLexer::CIDR:
        opt.value.kind = ast::Value::Kind::cidr;
        break;
      default:
        opt.value.kind = ast::Value::Kind::string;
        break;
    }
    opt.value.text = opt.value.kind == ast::Value::Kind::string ? unescape(t) : t->getText();
    return opt;
  }

  // Only \" and \\ are escapes (SRL.md §2); anything else after a backslash
  // is an error at the backslash.
  std::string unescape(const antlr4::Token* t) {
    const std::string raw = t->getText();
    std::string out;
    Loc loc = token_loc(t);
    std::uint32_t col = loc.col + 1;
    for (std::size_t i = 1; i + 1 < raw.size();) {
      const char c = raw[i];
      if (c == '\\') {
        const char next = raw[i + 1];
        if (next == '"' || next == '\\') {
          out += next;
        } else {
          const std::size_t n = utf8::sequence_length(static_cast<unsigned char>(next));
          diags_.error(Loc{loc.line, col, 2}, "unknown escape '\\" +
                                                  utf8::printable(raw.substr(i + 1, n)) +
                                                  "' in string; expected \\\" or \\\\");
        }
        i += 1 + utf8::sequence_length(static_cast<unsigned char>(next));
        col += 2;
      } else {
        const std::size_t n = utf8::sequence_length(static_cast<unsigned char>(c));
        out.append(raw, i, n);
        i += n;
        ++col;
      }
    }
    return out;
  }

  Diagnostics& diags_;
};

}  // namespace

std::optional<ast::Request> parse(const SourceFile& src, const Limits& limits, Diagnostics& diags) {
  if (!precheck(src, limits, diags)) return std::nullopt;

  antlr4::ANTLRInputStream input(src.text());
  SrlLexer lexer(&input);
  lexer.removeErrorListeners();  // BAD_CHAR makes the lexer total
  antlr4::CommonTokenStream tokens(&lexer);
  tokens.fill();
  const auto& all = tokens.getTokens();
  for (std::size_t i = 0; i < all.size() && !diags.too_many(); ++i) {
    const antlr4::Token* t = all[i];
    if (t->getType() == SrlLexer::UNTERMINATED_STRING) {
      diags.error(token_loc(t), "unterminated string; expected a closing '\"' on the same line");
      continue;
    }
    if (t->getType() != SrlLexer::BAD_CHAR) continue;
    Loc loc = token_loc(t);
    if (t->getText() == "'") {
      // 'evil' is one mistake, not two.
      std::size_t j = i + 1;
      std::string inner;
      while (j < all.size() && all[j]->getLine() == t->getLine() && all[j]->getText() != "'" &&
             all[j]->getType() != antlr4::Token::EOF)
        inner += all[j++]->getText();
      if (j < all.size() && all[j]->getText() == "'") {
        loc.length = static_cast<std::uint32_t>(all[j]->getCharPositionInLine() -
                                                t->getCharPositionInLine() + 1);
        diags.error(loc, "strings are written in double quotes; expected \"" +
                             utf8::printable(inner) + "\"");
        i = j;
      } else {
        diags.error(loc, "unexpected character \"'\"; strings are written in double quotes");
      }
      continue;
    }
    // A run of adjacent bad characters is one error.
    std::size_t j = i + 1;
    while (j < all.size() && all[j]->getType() == SrlLexer::BAD_CHAR && all[j]->getText() != "'" &&
           all[j]->getStartIndex() == all[j - 1]->getStopIndex() + 1)
      ++j;
    std::string run;
    for (std::size_t k = i; k < j; ++k)
      run += all[k]->getText();
    loc.length = static_cast<std::uint32_t>(j - i);
    diags.error(loc,
                std::string(j - i == 1 ? "unexpected character '" : "unexpected characters '") +
                    utf8::printable(run) +
                    "'; expected a filter, an operator ('>', '|', ';', 'and', 'or', 'not') "
                    "or a comment");
    i = j - 1;
  }
  if (diags.has_errors()) return std::nullopt;

  SrlParser parser(&tokens);
  parser.removeErrorListeners();
  SyntaxErrorListener listener(diags, tokens);
  parser.addErrorListener(&listener);
  SrlParser::RequestContext* tree = nullptr;
  try {
    tree = parser.request();
  } catch (const SyntaxErrorSeen&) {
    return std::nullopt;
  }
  AstBuilder builder(diags);
  ast::Request request = builder.build(tree);
  if (diags.has_errors()) return std::nullopt;
  return request;
}

}  // namespace srl::compiler
