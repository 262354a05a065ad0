#include "srl/compiler/diagnostics.h"

#include <nlohmann/json.hpp>

#include "srl/compiler/utf8.h"

namespace srl::compiler {

SourceFile::SourceFile(std::string name, std::string text)
    : name_(std::move(name)), text_(std::move(text)) {
  line_starts_.push_back(0);
  for (std::size_t i = 0; i < text_.size(); ++i)
    if (text_[i] == '\n') line_starts_.push_back(i + 1);
}

std::string_view SourceFile::line(std::uint32_t number) const {
  if (number == 0 || number > line_starts_.size()) return {};
  const std::size_t begin = line_starts_[number - 1];
  std::size_t end = number < line_starts_.size() ? line_starts_[number] - 1 : text_.size();
  if (end > begin && text_[end - 1] == '\r') --end;
  return std::string_view(text_).substr(begin, end - begin);
}

std::string SourceFile::where(const Loc& loc) const {
  if (!loc.valid()) return name_;
  return name_ + ":" + std::to_string(loc.line) + ":" + std::to_string(loc.col);
}

std::string_view to_string(Severity s) {
  switch (s) {
    case Severity::error:
      return "error";
    case Severity::warning:
      return "warning";
    case Severity::note:
      return "note";
  }
  return "?";
}

Diagnostic& Diagnostics::error(Loc loc, std::string message) {
  ++errors_;
  return list_.emplace_back(Diagnostic{Severity::error, loc, std::move(message), {}});
}

Diagnostic& Diagnostics::warning(Loc loc, std::string message) {
  return list_.emplace_back(Diagnostic{Severity::warning, loc, std::move(message), {}});
}

void Diagnostics::note(Diagnostic& d, Loc loc, std::string message) {
  d.notes.push_back(Diagnostic{Severity::note, loc, std::move(message), {}});
}

void Diagnostics::promote_warnings() {
  for (auto& d : list_) {
    if (d.severity == Severity::warning) {
      d.severity = Severity::error;
      ++errors_;
    }
  }
}

namespace {

// The quoted line and a caret line under it, with a gutter holding the line
// number. Tabs in the line are kept in the caret line so the caret aligns;
// a very long line is cut to a window around the column.
void render_snippet(std::string& out, const Loc& loc, const SourceFile& src) {
  if (!loc.valid() || loc.line > src.line_count()) return;
  constexpr std::uint32_t kWindow = 120;
  std::string_view line = src.line(loc.line);
  std::uint32_t col = loc.col;
  std::string lead;
  if (col > kWindow) {  // skip whole characters up to a window before col
    std::size_t i = 0;
    for (std::uint32_t c = 1; c < col - kWindow / 2 && i < line.size(); ++c)
      i += utf8::sequence_length(static_cast<unsigned char>(line[i]));
    line.remove_prefix(i);
    col -= static_cast<std::uint32_t>(utf8::length(src.line(loc.line).substr(0, i)));
    lead = "...";
  }
  std::string_view shown = line;
  bool cut_end = false;
  if (utf8::length(line) > col + kWindow) {
    std::size_t i = 0;
    for (std::uint32_t c = 1; c < col + kWindow && i < line.size(); ++c)
      i += utf8::sequence_length(static_cast<unsigned char>(line[i]));
    shown = line.substr(0, i);
    cut_end = true;
  }
  std::string number = std::to_string(loc.line);
  if (number.size() < 4) number.insert(0, 4 - number.size(), ' ');
  const std::string gutter(number.size(), ' ');
  out += number + " | " + lead + utf8::printable(shown) + (cut_end ? "..." : "") + "\n";
  out += gutter + " | " + std::string(lead.size(), ' ');
  std::uint32_t c = 1;
  for (std::size_t i = 0; i < shown.size() && c < col; ++c) {
    const auto u = static_cast<unsigned char>(shown[i]);
    if (u == '\t')
      out += '\t';
    else if (u < 0x20 || u == 0x7F)
      out += "    ";  // shown as \xNN
    else
      out += ' ';
    i += utf8::sequence_length(u);
  }
  for (; c < col; ++c)
    out += ' ';  // a position past the end of the line
  out += '^';
  for (std::uint32_t i = 1; i < loc.length && i < kWindow; ++i)
    out += '~';
  out += '\n';
}

}  // namespace

std::string render(const Diagnostic& d, const SourceFile& src) {
  std::string out =
      src.where(d.loc) + ": " + std::string(to_string(d.severity)) + ": " + d.message + "\n";
  render_snippet(out, d.loc, src);
  for (const auto& n : d.notes)
    out += render(n, src);
  return out;
}

std::string Diagnostics::render(const SourceFile& src) const {
  std::string out;
  for (const auto& d : list_)
    out += compiler::render(d, src);
  if (too_many())
    out += src.name() + ": note: stopped after " + std::to_string(kMaxErrors) + " errors\n";
  return out;
}

nlohmann::json Diagnostics::to_json(const SourceFile& src) const {
  nlohmann::json all = nlohmann::json::array();
  auto one = [&](const Diagnostic& d) {
    nlohmann::json j = {
        {"severity", to_string(d.severity)}, {"file", src.name()}, {"message", d.message}};
    if (d.loc.valid()) {
      j["line"] = d.loc.line;
      j["col"] = d.loc.col;
    }
    return j;
  };
  for (const auto& d : list_) {
    nlohmann::json j = one(d);
    if (!d.notes.empty()) {
      j["notes"] = nlohmann::json::array();
      for (const auto& n : d.notes)
        j["notes"].push_back(one(n));
    }
    all.push_back(std::move(j));
  }
  return all;
}

}  // namespace srl::compiler
