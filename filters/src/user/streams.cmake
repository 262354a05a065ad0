# tcpstream: sources and tests (owned with tcpstream.cpp).
target_sources(srl_user_filters PRIVATE src/user/tcpstream.cpp)
srl_unit_test(tcpstream_test SOURCES tests/tcpstream_test.cpp
  LIBS srl_user_filters srl_packet_corpus)
target_include_directories(tcpstream_test PRIVATE src/user)
