// The one doctest runner every unit-test executable links (compiled once:
// doctest's implementation is the slowest translation unit of a test).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
