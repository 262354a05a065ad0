// Helpers for the file-driven tests: golden files live next to their inputs
// under compiler/tests/, and SRL_UPDATE_GOLDEN=1 rewrites them from what the
// compiler produces now (review the diff before committing it).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "srl/compiler/compiler.h"

namespace srl::testing {

inline std::filesystem::path testdata(const std::string& sub) {
  return std::filesystem::path(SRL_TESTDATA_DIR) / sub;
}

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

// Inputs (*.srl) of a test-data directory, sorted for stable test order.
inline std::vector<std::filesystem::path> inputs(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".srl") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Compile options for a test input: the name it is shown under, and default
// devices from a first line "# dev: IF [IF...]".
inline compiler::CompileOptions options_for(const std::filesystem::path& input,
                                            const std::string& text) {
  compiler::CompileOptions o;
  o.file_name = input.filename().string();
  if (text.rfind("# dev:", 0) == 0) {
    std::istringstream line(text.substr(6, text.find('\n') - 6));
    for (std::string dev; line >> dev;)
      o.default_devices.push_back(dev);
  }
  return o;
}

// Compares `actual` with the golden file, or rewrites it when updating.
// Returns an empty string when they agree, else a description of the first
// difference.
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
