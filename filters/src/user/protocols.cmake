# Application protocols and pattern matching: sources and tests.
target_sources(srl_user_filters PRIVATE src/user/protocols.cpp src/user/match.cpp)
