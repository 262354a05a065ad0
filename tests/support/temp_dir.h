// A directory of a test's own under the system's temporary directory,
// removed with everything in it at scope exit, also when the test fails.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace srl::testing {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(std::string_view prefix = "srl-test") {
    std::string templ =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // The path of `name` in the directory, as a string.
  std::string operator/(std::string_view name) const { return (path / name).string(); }
};

}  // namespace srl::testing
