// print: one tcpdump-like line per block (in the spirit of `tcpdump -q`,
// with TCP flags), UTC time of day with nanoseconds. Lines are collected and
// written when the buffer fills, at every tick and at the end.
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "factories.h"
#include "io.h"

namespace srl::filters::user {
namespace {

constexpr std::size_t kFlushAt = 64 * 1024;
constexpr std::size_t kPreviewBytes = 32;

constexpr std::uint16_t kEtherArp = 0x0806;
constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;

std::uint16_t be16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}

__attribute__((format(printf, 2, 3))) void append_format(std::string& line, const char* format,
                                                         ...) {
  char text[256];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  if (n > 0) line.append(text, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof text - 1));
}

void append_time(std::string& line, std::uint64_t ts_ns) {
  const std::uint64_t s = ts_ns / 1'000'000'000 % 86400;
  append_format(line, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%09" PRIu64, s / 3600, s / 60 % 60,
                s % 60, ts_ns % 1'000'000'000);
}

// tcpdump's letters and order.
std::string tcp_flags_text(std::uint8_t flags) {
  static constexpr std::pair<std::uint8_t, char> kLetters[] = {
      {0x01, 'F'}, {0x02, 'S'}, {0x04, 'R'}, {0x08, 'P'},
      {0x10, '.'}, {0x20, 'U'}, {0x40, 'E'}, {0x80, 'W'}};
  std::string s;
  for (const auto& [bit, letter] : kLetters)
    if (flags & bit) s += letter;
  return s.empty() ? "none" : s;
}

const char* icmp_name(bool v6, std::uint8_t type) {
  if (!v6) {
    switch (type) {
      case 0:
        return "echo reply";
      case 3:
        return "unreachable";
      case 5:
        return "redirect";
      case 8:
        return "echo request";
      case 11:
        return "time exceeded";
      default:
        return nullptr;
    }
  }
  switch (type) {
    case 1:
      return "unreachable";
    case 2:
      return "packet too big";
    case 3:
      return "time exceeded";
    case 128:
      return "echo request";
    case 129:
      return "echo reply";
    case 133:
      return "router solicitation";
    case 134:
      return "router advertisement";
    case 135:
      return "neighbor solicitation";
    case 136:
      return "neighbor advertisement";
    default:
      return nullptr;
  }
}

void append_ip(std::string& line, const ParsedPacket& p, std::span<const std::uint8_t> f,
               std::uint64_t wire) {
  const bool v6 = p.l3 == L3Kind::ipv6;
  // Lengths come from the IP header, so that a short capture still shows
  // what was on the wire.
  std::uint64_t ip_end = wire;
  if (!v6 && p.l3_offset + 4 <= f.size())
    ip_end = p.l3_offset + std::uint64_t{be16(f, p.l3_offset + 2)};
  else if (v6 && p.l3_offset + 6 <= f.size())
    ip_end = p.l3_offset + 40 + std::uint64_t{be16(f, p.l3_offset + 4)};
  const auto after = [&](std::uint64_t offset) { return ip_end > offset ? ip_end - offset : 0; };

  line += v6 ? "IP6 " : "IP ";
  const std::string src = address_text(p.l3, p.saddr);
  const std::string dst = address_text(p.l3, p.daddr);
  if (p.has_ports()) {
    append_format(line, "%s.%u > %s.%u: ", src.c_str(), unsigned{p.sport}, dst.c_str(),
                  unsigned{p.dport});
    if (p.l4 == L4Kind::tcp) {
      const std::uint64_t header = std::uint64_t{f[p.l4_offset + 12]} >> 4 << 2;
      append_format(line, "tcp %" PRIu64 " [%s]", after(p.l4_offset + header),
                    tcp_flags_text(p.tcp_flags).c_str());
    } else {
      append_format(line, "udp %" PRIu64, after(p.l4_offset + 8));
    }
    return;
  }
  line += src + " > " + dst + ": ";
  if (p.l4 == L4Kind::icmp) {
    const std::uint8_t type = f[p.l4_offset];
    line += v6 ? "ICMP6 " : "ICMP ";
    if (const char* name = icmp_name(v6, type))
      line += name;
    else
      append_format(line, "type %u code %u", unsigned{type}, unsigned{f[p.l4_offset + 1]});
    append_format(line, ", length %" PRIu64, after(p.l4_offset));
  } else if (p.non_first_fragment) {
    append_format(line, "%s fragment, length %" PRIu64, proto_text(p.l4_proto).c_str(),
                  after(p.l4_offset));
  } else if (p.l4_proto == 6 || p.l4_proto == 17 || p.l4_proto == 1 || p.l4_proto == 58) {
    // A known protocol whose header was cut short.
    append_format(line, "%s truncated, length %" PRIu64, proto_text(p.l4_proto).c_str(),
                  after(p.l4_offset));
  } else {
    append_format(line, "%s %" PRIu64, proto_text(p.l4_proto).c_str(), after(p.l4_offset));
  }
}

void append_arp(std::string& line, std::span<const std::uint8_t> f, std::size_t off,
                std::uint64_t wire) {
  // Ethernet/IPv4 ARP: hardware type 1, protocol 0x0800, lengths 6 and 4.
  if (off + 28 <= f.size() && be16(f, off) == 1 && be16(f, off + 2) == kEtherIpv4 &&
      f[off + 4] == 6 && f[off + 5] == 4) {
    const auto ip = [&](std::size_t at) {
      std::array<std::uint8_t, 16> a{};
      std::copy_n(f.begin() + static_cast<std::ptrdiff_t>(at), 4, a.begin());
      return address_text(L3Kind::ipv4, a);
    };
    const std::uint16_t op = be16(f, off + 6);
    if (op == 1) {
      line += "ARP, Request who-has " + ip(off + 24) + " tell " + ip(off + 14);
    } else if (op == 2) {
      line += "ARP, Reply " + ip(off + 14) + " is-at ";
      for (std::size_t i = 0; i < 6; ++i)
        append_format(line, i ? ":%02x" : "%02x", unsigned{f[off + 8 + i]});
    } else {
      append_format(line, "ARP, op %u", unsigned{op});
    }
    append_format(line, ", length %" PRIu64, wire - off);
    return;
  }
  append_format(line, "ARP, length %" PRIu64, wire > off ? wire - off : 0);
}

void append_packet(std::string& line, const Block& b) {
  const ParsedPacket p = b.parsed ? *b.parsed : parse_packet(b.data, b.wire_len);
  const std::span<const std::uint8_t> f = b.data;
  const std::uint64_t wire = b.wire();
  if (!p.eth) {
    append_format(line, "truncated frame, length %" PRIu64, wire);
    return;
  }
  for (std::uint8_t i = 0; i < p.vlan_count; ++i)
    append_format(line, "vlan %u ", unsigned{be16(f, 14 + 4 * std::size_t{i}) & 0x0FFFu});
  if (p.is_ip()) {
    append_ip(line, p, f, wire);
  } else if (p.ethertype == kEtherArp) {
    append_arp(line, f, p.l3_offset, wire);
  } else if (p.ethertype == kEtherIpv4 || p.ethertype == kEtherIpv6) {
    append_format(line, "%s, bad header, length %" PRIu64, p.ethertype == kEtherIpv4 ? "IP" : "IP6",
                  wire);
  } else if (p.ethertype < 0x0600) {
    append_format(line, "802.3, length %" PRIu64, wire);
  } else {
    append_format(line, "ethertype 0x%04x, length %" PRIu64, unsigned{p.ethertype}, wire);
  }
}

void append_stream(std::string& line, const Block& b) {
  line += "stream ";
  if (b.flow != nullptr) {
    const FlowInfo& fl = *b.flow;
    std::string client =
        address_text(fl.family, fl.client_addr) + "." + std::to_string(fl.client_port);
    std::string server =
        address_text(fl.family, fl.server_addr) + "." + std::to_string(fl.server_port);
    if (b.direction != 0) std::swap(client, server);
    line += std::to_string(fl.id) + " " + client + " > " + server;
  } else {
    line += "?";
  }
  append_format(line, " offset %" PRIu64 ", %zu bytes", b.stream_offset, b.data.size());
  if (b.stream_end) line += ", end";
  if (!b.data.empty()) {
    line += " \"";
    for (std::size_t i = 0; i < std::min(b.data.size(), kPreviewBytes); ++i) {
      const std::uint8_t c = b.data[i];
      line += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
    }
    line += '"';
  }
}

class PrintSink final : public UserFilter {
 public:
  explicit PrintSink(std::FILE* out) : out_(out) { buffer_.reserve(kFlushAt + 512); }
  ~PrintSink() override { flush(); }

  void process(const Block& block, Emitter&) override {
    buffer_ += format_block(block);
    buffer_ += '\n';
    ++lines_;
    if (buffer_.size() >= kFlushAt) flush();
  }
  void tick(std::uint64_t, Emitter&) override { flush(); }
  void finish(Emitter&) override { flush(); }
  FilterStats stats() const override {
    return {{"lines", lines_}, {"dropped_unwritten", dropped_unwritten_}};
  }
  std::string failure() const override { return failure_; }

 private:
  // Lines the output did not take (a reader that went: EPIPE where SIGPIPE
  // is ignored; a full disk) are counted, and the first reason said.
  void flush() {
    if (buffer_.empty()) return;
    errno = 0;
    const std::size_t put = std::fwrite(buffer_.data(), 1, buffer_.size(), out_);
    const bool failed = put < buffer_.size() || std::fflush(out_) != 0;
    if (failed) {
      const int err = errno;
      dropped_unwritten_ +=
          static_cast<std::uint64_t>(std::count(buffer_.begin(), buffer_.end(), '\n'));
      if (failure_.empty())
        failure_ = std::string("writing standard output: ") +
                   (err != 0 ? std::strerror(err) : "the stream is in error");
      std::clearerr(out_);
    }
    buffer_.clear();
  }

  std::FILE* out_;
  std::string buffer_;
  std::uint64_t lines_ = 0;
  std::uint64_t dropped_unwritten_ = 0;
  std::string failure_;
};

}  // namespace

std::string format_block(const Block& block) {
  std::string line;
  append_time(line, block.ts_ns);
  line += ' ';
  if (block.kind == BlockKind::stream)
    append_stream(line, block);
  else
    append_packet(line, block);
  return line;
}

std::unique_ptr<UserFilter> make_print_sink(std::FILE* out) {
  return std::make_unique<PrintSink>(out);
}

std::unique_ptr<UserFilter> make_print_sink(const UserFilterConfig&) {
  return make_print_sink(stdout);
}

}  // namespace srl::filters::user
