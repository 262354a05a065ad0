# Build time. Most of it goes to the third-party headers (CLI11,
# nlohmann/json, Boost.Graph, gRPC, doctest): parsed in every translation
# unit, and their inline code compiled in each.

# Unity builds: the sources of one group compile as one translation unit, so
# the headers they share are parsed, and their inline code compiled, once per
# group instead of once per file. The groups are listed by hand: two files of
# one group must not declare the same name in an anonymous namespace or as
# static (it would not compile, or, for overloads, a call could pick the other
# file's). A source in no group compiles alone. clang reports unused
# namespace-scope variables of the main file only, which in a group is the
# generated one: the per-file build below shows those of grouped files too.
option(SRL_UNITY_BUILD "Compile the sources of each unity group as one translation unit" ON)
# Precompiled headers: the unit tests' third-party headers, parsed once.
option(SRL_PCH "Precompile the headers the unit tests share" ON)
# With both OFF every file compiles alone and sees only what it includes,
# which checks that it includes what it uses.

# srl_unity_group(TARGET GROUP SOURCE...): SOURCEs (relative to the current
# source directory, which must be TARGET's) form unity group GROUP of TARGET.
function(srl_unity_group target group)
  if(NOT SRL_UNITY_BUILD)
    return()
  endif()
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
  set_source_files_properties(${ARGN} PROPERTIES UNITY_GROUP ${target}_${group})
endfunction()

# srl_test_pch: the precompiled header every unit test (srl_unit_test) reuses,
# built with the options of test code (srl_test_options). Not in a
# ThreadSanitizer tree (SRL_TSAN), whose instrumented tests could not use it.
if(SRL_PCH AND NOT SRL_TSAN)
  file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/srl_test_pch.cpp
       CONTENT "// Builds the unit tests' precompiled header (cmake/SrlFastBuild.cmake).\n")
  add_library(srl_test_pch OBJECT EXCLUDE_FROM_ALL ${PROJECT_BINARY_DIR}/srl_test_pch.cpp)
  srl_test_options(srl_test_pch)
  target_precompile_headers(srl_test_pch PRIVATE
    <doctest/doctest.h> <nlohmann/json.hpp> <boost/graph/adjacency_list.hpp>
    <filesystem> <fstream> <map> <string> <vector>)
endif()
