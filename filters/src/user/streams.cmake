# tcpstream: sources and tests (owned with tcpstream.cpp).
target_sources(srl_user_filters PRIVATE src/user/tcpstream.cpp)
