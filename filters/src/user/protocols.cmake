# Application protocols and pattern matching: sources and tests.
target_sources(srl_user_filters PRIVATE src/user/protocols.cpp src/user/match.cpp)
srl_unit_test(protocols_test SOURCES tests/protocols_test.cpp
  LIBS srl_user_filters srl_packet_corpus)
srl_unit_test(match_test SOURCES tests/match_test.cpp
  LIBS srl_user_filters srl_packet_corpus)
