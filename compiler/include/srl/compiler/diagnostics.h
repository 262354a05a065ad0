// Source positions and compiler diagnostics (SRL.md §4): every message names
// FILE:LINE:COL, quotes the line, puts a caret under the column and says what
// was expected.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace srl::compiler {

// A position in the request text. Lines and columns count from 1; columns
// count characters (code points), not bytes. line == 0 means "no position"
// (nodes the compiler adds, such as the implicit source).
struct Loc {
  std::uint32_t line = 0;
  std::uint32_t col = 0;
  std::uint32_t length = 1;  // characters underlined

  bool valid() const { return line != 0; }
  friend bool operator==(const Loc&, const Loc&) = default;
};

// The request text under its display name ("req.srl", "<expr>", "<stdin>").
class SourceFile {
 public:
  SourceFile(std::string name, std::string text);
  const std::string& name() const { return name_; }
  const std::string& text() const { return text_; }
  std::string_view line(std::uint32_t number) const;  // without the newline
  std::uint32_t line_count() const { return static_cast<std::uint32_t>(line_starts_.size()); }
  // "FILE:LINE:COL", or "FILE" for an invalid position.
  std::string where(const Loc& loc) const;

 private:
  std::string name_;
  std::string text_;
  std::vector<std::size_t> line_starts_;
};

enum class Severity : std::uint8_t { error, warning, note };
std::string_view to_string(Severity s);

struct Diagnostic {
  Severity severity = Severity::error;
  Loc loc;
  std::string message;
  std::vector<Diagnostic> notes;  // related positions ("first defined here")
};

class Diagnostics {
 public:
  static constexpr std::size_t kMaxErrors = 50;

  Diagnostic& error(Loc loc, std::string message);
  Diagnostic& warning(Loc loc, std::string message);
  void note(Diagnostic& d, Loc loc, std::string message);

  bool has_errors() const { return errors_ > 0; }
  std::size_t error_count() const { return errors_; }
  std::size_t warning_count() const { return list_.size() - errors_; }
  bool too_many() const { return errors_ >= kMaxErrors; }
  const std::vector<Diagnostic>& all() const { return list_; }
  // Turns every warning into an error (srlc -Werror).
  void promote_warnings();

  // Human-readable form: one block per diagnostic, with the quoted line and
  // a caret, as compilers print them.
  std::string render(const SourceFile& src) const;
  nlohmann::json to_json(const SourceFile& src) const;

 private:
  std::vector<Diagnostic> list_;
  std::size_t errors_ = 0;
};

std::string render(const Diagnostic& d, const SourceFile& src);

}  // namespace srl::compiler
