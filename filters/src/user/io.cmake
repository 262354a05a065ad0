# pcapin and the sinks: sources and tests.
target_sources(srl_user_filters PRIVATE src/user/io.cpp)
