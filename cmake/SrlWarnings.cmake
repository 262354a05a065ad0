# Warning set for the project's own targets (generated code gets none).
function(srl_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
    -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
    # Catalog entries use designated initializers; omitted fields are on purpose.
    -Wno-missing-field-initializers)
  if(SRL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# A doctest unit-test executable registered with CTest; its main() comes
# from srl_test_main (tests/support/test_main.cpp).
# With SRL_UNIT_TESTS off it is not built with the rest (`ninja NAME` still
# builds it), and ctest is to be given the other tests only.
function(srl_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  if(SRL_UNIT_TESTS)
    add_executable(${name} ${T_SOURCES})
  else()
    add_executable(${name} EXCLUDE_FROM_ALL ${T_SOURCES})
  endif()
  target_link_libraries(${name} PRIVATE srl_test_main)
  srl_test_options(${name})
  if(TARGET srl_test_pch)
    target_precompile_headers(${name} REUSE_FROM srl_test_pch)
  endif()
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  add_test(NAME ${name} COMMAND ${name})
endfunction()

# The compile options of test code: those of every unit test, and of
# srl_test_pch (cmake/SrlFastBuild.cmake), whose precompiled header they reuse.
function(srl_test_options target)
  # The test code itself unoptimised: it compiles in less than half the time,
  # and what it tests (the libraries) is built as the tree is configured.
  target_compile_options(${target} PRIVATE -O0)
  target_include_directories(${target} SYSTEM PRIVATE ${DOCTEST_INCLUDE_DIR})
  # The same macros and threading mode in every test, as the precompiled
  # header needs: Boost's, and -pthread (which gRPC's users get from re2).
  target_link_libraries(${target} PRIVATE nlohmann_json::nlohmann_json Boost::headers)
  target_compile_options(${target} PRIVATE -pthread)
  srl_warnings(${target})
endfunction()
