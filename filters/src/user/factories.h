// The userspace implementations the registry (registry.cpp) knows, one
// factory per filter. Each throws std::invalid_argument through
// config_error() for a bad option.
#pragma once

#include <memory>

#include "srl/filters/user.h"

namespace srl::filters::user {

// L2-L4 header filters over the reference implementations (l2l4.cpp).
std::unique_ptr<UserFilter> make_header_filter(const UserFilterConfig& config);
// count: by=class keeps tallies per input class; otherwise a header filter.
std::unique_ptr<UserFilter> make_count(const UserFilterConfig& config);

// Reassembly (tcpstream.cpp).
std::unique_ptr<UserFilter> make_tcpstream(const UserFilterConfig& config);

// Application protocols (protocols.cpp) and pattern matching (match.cpp).
std::unique_ptr<UserFilter> make_http(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_ssh(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_rtsp(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_dns(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_tls(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_match(const UserFilterConfig& config);

// Files and pipes (io.cpp): the pcapin source and the sinks.
std::unique_ptr<UserSource> make_pcapin(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_pcap_sink(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_print_sink(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_file_sink(const UserFilterConfig& config);
std::unique_ptr<UserFilter> make_fifo_sink(const UserFilterConfig& config);

// Transmission on a device (tx.cpp).
std::unique_ptr<UserFilter> make_tx(const UserFilterConfig& config);

}  // namespace srl::filters::user
