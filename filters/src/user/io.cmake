# pcapin and the sinks: sources and tests.
target_sources(srl_user_filters PRIVATE src/user/as_user.cpp src/user/io.cpp src/user/io_pcapin.cpp
               src/user/io_pcap.cpp src/user/io_print.cpp src/user/io_file.cpp src/user/io_fifo.cpp)
srl_unit_test(io_test SOURCES tests/io_test.cpp
  LIBS srl_user_filters srl_packet_corpus PkgConfig::PCAP Threads::Threads)
target_include_directories(io_test PRIVATE src/user)
