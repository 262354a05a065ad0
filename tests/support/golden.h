// Golden files for the file-driven tests of every library: the expected
// output lives next to its input, and SRL_UPDATE_GOLDEN=1 rewrites it from
// what the code produces now (review the diff before committing it).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace srl::testing {

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

inline bool updating_golden() {
  const char* v = std::getenv("SRL_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

// Compares `actual` with the golden file, or rewrites it when updating.
// Returns an empty string when they agree, else the first difference.
inline std::string check_golden(const std::filesystem::path& golden, const std::string& actual) {
  if (updating_golden()) {
    write_file(golden, actual);
    return {};
  }
  if (!std::filesystem::exists(golden))
    return golden.string() + " is missing (run with SRL_UPDATE_GOLDEN=1 to create it)";
  const std::string expected = read_file(golden);
  if (expected == actual) return {};
  std::size_t line = 1, i = 0;
  for (; i < expected.size() && i < actual.size() && expected[i] == actual[i]; ++i)
    if (expected[i] == '\n') ++line;
  auto line_at = [](const std::string& s, std::size_t pos) {
    const std::size_t b = s.rfind('\n', pos == 0 ? 0 : pos - 1);
    const std::size_t start = b == std::string::npos ? 0 : b + 1;
    return s.substr(start, s.find('\n', start) - start);
  };
  return golden.string() + ": differs at line " + std::to_string(line) +
         "\n  expected: " + line_at(expected, i) + "\n  actual:   " + line_at(actual, i);
}

}  // namespace srl::testing
