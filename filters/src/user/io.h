// Internals of the pcapin source and the sinks (io_*.cpp) that the sinks
// share with each other and that tests reach past the registry: the pcap
// record layout, the print line format and constructors with injectable
// output.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "srl/filters/user.h"

namespace srl::filters::user {

// Nanosecond-resolution pcap ("a1b23c4d" magic), little endian, Ethernet.
inline constexpr std::uint32_t kPcapNanoMagic = 0xa1b23c4d;
inline constexpr std::uint32_t kLinktypeEthernet = 1;
inline constexpr std::uint32_t kMaxSnaplen = 262144;

void append_le16(std::vector<std::uint8_t>& out, std::uint16_t v);
void append_le32(std::vector<std::uint8_t>& out, std::uint32_t v);
void append_le64(std::vector<std::uint8_t>& out, std::uint64_t v);

// The 24-byte file header.
void append_pcap_header(std::vector<std::uint8_t>& out, std::uint32_t snaplen);
// One packet record: caplen = min(data, snaplen), original length =
// max(wire_len, data). Returns the bytes of packet data written.
std::size_t append_pcap_record(std::vector<std::uint8_t>& out, const Block& block,
                               std::uint32_t snaplen);

// "a.b.c.d" or the canonical IPv6 text.
std::string address_text(L3Kind family, const std::array<std::uint8_t, 16>& addr);

// An IP protocol as print and file name it: "tcp", "udp", "icmp", "icmp6",
// "unknown-proto" (255: not known), else "ip-proto-N".
std::string proto_text(std::uint8_t proto);

// The line `print` writes for a block, without the newline. Times are UTC
// time of day with nanoseconds.
std::string format_block(const Block& block);

// `print` writing to `out` (not closed) instead of stdout.
std::unique_ptr<UserFilter> make_print_sink(std::FILE* out);

// `file` keeping at most `max_open` files open at once.
std::unique_ptr<UserFilter> make_file_sink(const UserFilterConfig& config, std::size_t max_open);

// `fifo` buffering at most `buffer_bytes` for a slow reader.
std::unique_ptr<UserFilter> make_fifo_sink(const UserFilterConfig& config,
                                           std::size_t buffer_bytes);

}  // namespace srl::filters::user
