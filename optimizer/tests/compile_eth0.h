// The optimizer tests' requests, compiled with eth0 as their default device.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "srl/compiler/compiler.h"

namespace srl::optimizer_tests {

inline compiler::CompileResult compile(const std::string& text) {
  compiler::CompileOptions co;
  co.default_devices = {"eth0"};
  auto r = compiler::compile(text, co);
  REQUIRE_MESSAGE(r.ok(), r.diagnostics.render(*r.source));
  return r;
}

}  // namespace srl::optimizer_tests
