# The userspace ends of the kernel-to-user channel (AF_XDP) and `rx` placed
# in userspace (AF_PACKET), both sources of blocks for the userspace engine.
if(NOT TARGET PkgConfig::LIBXDP)
  pkg_check_modules(LIBXDP REQUIRED IMPORTED_TARGET libxdp)
endif()
target_sources(srl_runtime PRIVATE src/afxdp.cpp src/copy_ring.cpp src/packet_socket.cpp)
target_link_libraries(srl_runtime PUBLIC srl_user_filters PRIVATE PkgConfig::LIBXDP)

# Needs root: network namespaces, veth pairs, XDP and AF_XDP.
srl_unit_test(channels_test SOURCES tests/channels_test.cpp
  LIBS srl_runtime PkgConfig::LIBBPF PkgConfig::LIBXDP)
set_tests_properties(channels_test PROPERTIES RUN_SERIAL TRUE)
