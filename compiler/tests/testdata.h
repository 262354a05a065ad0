// Helpers for the compiler's file-driven tests, whose inputs and golden
// files live under compiler/tests/ (golden.h has the comparison).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "golden.h"
#include "srl/compiler/compiler.h"

namespace srl::testing {

inline std::filesystem::path testdata(const std::string& sub) {
  return std::filesystem::path(SRL_TESTDATA_DIR) / sub;
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

}  // namespace srl::testing
