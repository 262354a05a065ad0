// The reference filters of docs/filter-semantics.md, "Filters".
#include "srl/filters/reference.h"

#include <arpa/inet.h>
#include <pcap/bpf.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>
#include <variant>

namespace srl::filters {
namespace {

constexpr std::uint16_t kEtherArp = 0x0806;

[[noreturn]] void fail(const FilterSpec& spec, const std::string& what) {
  throw std::invalid_argument("filter '" + std::string(spec.name) + "': " + what);
}

// An option as written, else the catalog's default, else nothing.
std::optional<OptionValue> option(const FilterSpec& spec,
                                  const std::map<std::string, OptionValue>& options,
                                  std::string_view name) {
  const OptionSpec* os = spec.option(name);
  if (os == nullptr) fail(spec, "the catalog has no option '" + std::string(name) + "'");
  if (auto it = options.find(std::string(name)); it != options.end()) return it->second;
  if (os->default_value) return os->default_value;
  if (os->required) fail(spec, "option '" + std::string(name) + "' is required");
  return std::nullopt;
}

std::optional<std::int64_t> int_option(const FilterSpec& spec,
                                       const std::map<std::string, OptionValue>& options,
                                       std::string_view name) {
  auto v = option(spec, options, name);
  if (!v) return std::nullopt;
  if (const auto* i = std::get_if<std::int64_t>(&*v)) return *i;
  fail(spec, "option '" + std::string(name) + "' must be an integer");
}

std::optional<std::string> string_option(const FilterSpec& spec,
                                         const std::map<std::string, OptionValue>& options,
                                         std::string_view name) {
  auto v = option(spec, options, name);
  if (!v) return std::nullopt;
  if (auto* s = std::get_if<std::string>(&*v)) return std::move(*s);
  fail(spec, "option '" + std::string(name) + "' must be a string");
}

enum class Which : std::uint8_t { src, dst, any };

Which which_option(const FilterSpec& spec, const std::map<std::string, OptionValue>& options) {
  const std::string w = string_option(spec, options, "which").value_or("any");
  if (w == "src") return Which::src;
  if (w == "dst") return Which::dst;
  if (w == "any") return Which::any;
  fail(spec, "option 'which' must be src, dst or any, not '" + w + "'");
}

// Filters whose verdict depends on the parsed headers only.
using HeaderFn = Verdict (*)(const ParsedPacket&);

class HeaderFilter final : public ReferenceFilter {
 public:
  HeaderFilter(const FilterSpec& spec, HeaderFn fn) : ReferenceFilter(spec), fn_(fn) {}
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>, std::uint64_t) override {
    return fn_(p);
  }

 private:
  HeaderFn fn_;
};

Verdict accept_if(bool b) {
  return b ? accept_with(0) : kReject;
}

struct HeaderEntry {
  std::string_view name;
  HeaderFn fn;
};

// drop, pass and tx accept with class 0: the verdict is the hook's business.
constexpr std::array kHeaderFilters = {
    HeaderEntry{"eth", [](const ParsedPacket& p) { return accept_if(p.eth); }},
    HeaderEntry{
        "vlan",
        [](const ParsedPacket& p) { return p.vlan_count > 0 ? accept_with(p.vlan_id) : kReject; }},
    HeaderEntry{"arp",
                [](const ParsedPacket& p) { return accept_if(p.eth && p.ethertype == kEtherArp); }},
    HeaderEntry{"ipv4", [](const ParsedPacket& p) { return accept_if(p.l3 == L3Kind::ipv4); }},
    HeaderEntry{"ipv6", [](const ParsedPacket& p) { return accept_if(p.l3 == L3Kind::ipv6); }},
    HeaderEntry{"ip", [](const ParsedPacket& p) { return accept_if(p.is_ip()); }},
    HeaderEntry{"proto",
                [](const ParsedPacket& p) {
                  return p.is_ip() && p.l4_proto != kUnknownProto ? accept_with(p.l4_proto)
                                                                  : kReject;
                }},
    HeaderEntry{"tcp", [](const ParsedPacket& p) { return accept_if(p.l4 == L4Kind::tcp); }},
    HeaderEntry{"udp", [](const ParsedPacket& p) { return accept_if(p.l4 == L4Kind::udp); }},
    HeaderEntry{"icmp", [](const ParsedPacket& p) { return accept_if(p.l4 == L4Kind::icmp); }},
    HeaderEntry{"tcpflags",
                [](const ParsedPacket& p) {
                  return p.l4 == L4Kind::tcp ? accept_with(p.tcp_flags) : kReject;
                }},
    HeaderEntry{"drop", [](const ParsedPacket&) { return accept_with(0); }},
    HeaderEntry{"pass", [](const ParsedPacket&) { return accept_with(0); }},
    HeaderEntry{"tx", [](const ParsedPacket&) { return accept_with(0); }},
};

constexpr std::array<std::string_view, 8> kOtherFilters = {"port", "addr",   "len",  "hash",
                                                           "bpf",  "sample", "rate", "count"};

class PortFilter final : public ReferenceFilter {
 public:
  PortFilter(const FilterSpec& spec, Which which) : ReferenceFilter(spec), which_(which) {}
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>, std::uint64_t) override {
    if (!p.has_ports()) return kReject;
    switch (which_) {
      case Which::src:
        return accept_with(p.sport);
      case Which::dst:
        return accept_with(p.dport);
      case Which::any:
        break;
    }
    return accept_with(std::min(p.sport, p.dport));
  }

 private:
  Which which_;
};

class AddrFilter final : public ReferenceFilter {
 public:
  AddrFilter(const FilterSpec& spec, const std::string& cidr, Which which)
      : ReferenceFilter(spec), which_(which) {
    const auto slash = cidr.find('/');
    const std::string addr = cidr.substr(0, slash);
    const bool v6 = addr.find(':') != std::string::npos;
    family_ = v6 ? L3Kind::ipv6 : L3Kind::ipv4;
    const unsigned max_len = v6 ? 128 : 32;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr.c_str(), net_.data()) != 1)
      fail(spec, "option 'net' is not an address prefix: '" + cidr + "'");
    prefix_len_ = max_len;
    if (slash != std::string::npos) {
      const std::string digits = cidr.substr(slash + 1);
      if (digits.empty() || digits.size() > 3 ||
          !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        fail(spec, "option 'net' has a bad prefix length: '" + cidr + "'");
      prefix_len_ = static_cast<unsigned>(std::stoul(digits));
      if (prefix_len_ > max_len) fail(spec, "option 'net' has a bad prefix length: '" + cidr + "'");
    }
  }

  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>, std::uint64_t) override {
    if (p.l3 != family_) return kReject;
    const bool src = in_prefix(p.saddr), dst = in_prefix(p.daddr);
    switch (which_) {
      case Which::src:
        return accept_if(src);
      case Which::dst:
        return accept_if(dst);
      case Which::any:
        break;
    }
    return accept_if(src || dst);
  }

 private:
  bool in_prefix(const std::array<std::uint8_t, 16>& a) const {
    const unsigned full = prefix_len_ / 8, rest = prefix_len_ % 8;
    if (std::memcmp(a.data(), net_.data(), full) != 0) return false;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - rest));
    return ((a[full] ^ net_[full]) & mask) == 0;
  }

  Which which_;
  L3Kind family_ = L3Kind::ipv4;
  std::array<std::uint8_t, 16> net_{};
  unsigned prefix_len_ = 0;
};

class LenFilter final : public ReferenceFilter {
 public:
  LenFilter(const FilterSpec& spec, std::int64_t min, std::int64_t max)
      : ReferenceFilter(spec), min_(min), max_(max) {}
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>, std::uint64_t) override {
    return accept_if(min_ <= p.wire() && p.wire() <= max_);
  }

 private:
  std::int64_t min_, max_;
};

class HashFilter final : public ReferenceFilter {
 public:
  HashFilter(const FilterSpec& spec, std::int64_t buckets, HashFields fields)
      : ReferenceFilter(spec), buckets_(static_cast<std::uint32_t>(buckets)), fields_(fields) {}
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>, std::uint64_t) override {
    if (!p.is_ip()) return kReject;
    return accept_with(static_cast<std::uint16_t>(flow_hash(p, fields_) % buckets_));
  }

 private:
  std::uint32_t buckets_;
  HashFields fields_;
};

class BpfFilter final : public ReferenceFilter {
 public:
  BpfFilter(const FilterSpec& spec, std::vector<bpf_insn> insns)
      : ReferenceFilter(spec), insns_(std::move(insns)) {
    if (insns_.empty() || bpf_validate(insns_.data(), static_cast<int>(insns_.size())) == 0)
      fail(spec, "the classic BPF program is not valid");
  }
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t> frame,
                  std::uint64_t) override {
    // bpf_filter never reads past buflen, but wants a non-null buffer. Its
    // `len` is the length on the wire, as in tcpdump on a truncated capture.
    static const std::uint8_t empty = 0;
    const std::uint8_t* data = frame.empty() ? &empty : frame.data();
    const auto n = static_cast<u_int>(frame.size());
    return accept_if(bpf_filter(insns_.data(), data, std::max<u_int>(p.wire(), n), n) != 0);
  }

 private:
  std::vector<bpf_insn> insns_;
};

// What the compiler's "translate" pass does, for callers without the DAG.
std::vector<bpf_insn> compile_bpf(const FilterSpec& spec, const std::string& expr) {
  constexpr int kSnaplen = 262144;
  std::unique_ptr<pcap_t, decltype(&pcap_close)> handle(pcap_open_dead(DLT_EN10MB, kSnaplen),
                                                        &pcap_close);
  if (!handle) fail(spec, "libpcap could not open a handle");
  bpf_program prog{};
  if (pcap_compile(handle.get(), &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
    fail(spec, "invalid expression \"" + expr + "\": " + pcap_geterr(handle.get()));
  std::vector<bpf_insn> out(prog.bf_insns, prog.bf_insns + prog.bf_len);
  pcap_freecode(&prog);
  return out;
}

std::vector<bpf_insn> to_bpf_insns(const FilterSpec& spec, const ClassicBpf& cbpf) {
  std::vector<bpf_insn> out;
  out.reserve(cbpf.size());
  for (const auto& [code, jt, jf, k] : cbpf) {
    if (code > 0xFFFF || jt > 0xFF || jf > 0xFF)
      fail(spec, "a classic BPF instruction has a field out of range");
    out.push_back(bpf_insn{static_cast<u_short>(code), static_cast<u_char>(jt),
                           static_cast<u_char>(jf), static_cast<bpf_u_int32>(k)});
  }
  return out;
}

class CountFilter final : public ReferenceFilter {
 public:
  explicit CountFilter(const FilterSpec& spec) : ReferenceFilter(spec) {}
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>, std::uint64_t) override {
    ++packets_;
    bytes_ += p.wire();
    return accept_with(0);
  }

 private:
  std::uint64_t packets_ = 0, bytes_ = 0;
};

class SampleFilter final : public ReferenceFilter {
 public:
  SampleFilter(const FilterSpec& spec, std::int64_t n)
      : ReferenceFilter(spec), n_(static_cast<std::uint64_t>(n)) {}
  Verdict process(const ParsedPacket&, std::span<const std::uint8_t>, std::uint64_t) override {
    const bool take = seen_ % n_ == 0;
    ++seen_;
    return accept_if(take);
  }

 private:
  std::uint64_t n_;
  std::uint64_t seen_ = 0;
};

// A token bucket counted in billionths of a token, so that refilling by
// `elapsed_ns * rate` stays exact; 128 bits hold a full bucket of 10^12
// tokens.
__extension__ using u128 = unsigned __int128;
constexpr std::uint64_t kNsPerSecond = 1'000'000'000;

class TokenBucket {
 public:
  explicit TokenBucket(std::uint64_t rate)
      : rate_(rate), capacity_(u128{rate} * kNsPerSecond), tokens_(capacity_) {}
  void refill(std::uint64_t elapsed_ns) {
    // A second refills the bucket entirely; capping keeps the product small.
    const u128 add = u128{std::min(elapsed_ns, kNsPerSecond)} * rate_;
    tokens_ = std::min(capacity_, tokens_ + add);
  }
  bool has(std::uint64_t cost) const { return tokens_ >= u128{cost} * kNsPerSecond; }
  void take(std::uint64_t cost) { tokens_ -= u128{cost} * kNsPerSecond; }

 private:
  std::uint64_t rate_;
  u128 capacity_;
  u128 tokens_;
};

// Starts full. A block passes when every configured bucket holds its cost
// (1 packet; 8 * len bits) and then takes it from each; a rejected block
// takes nothing.
class RateFilter final : public ReferenceFilter {
 public:
  RateFilter(const FilterSpec& spec, std::optional<std::int64_t> pps,
             std::optional<std::int64_t> bps)
      : ReferenceFilter(spec) {
    if (!pps && !bps) fail(spec, "needs pps or bps (or both)");
    if (pps) pps_.emplace(static_cast<std::uint64_t>(*pps));
    if (bps) bps_.emplace(static_cast<std::uint64_t>(*bps));
  }
  Verdict process(const ParsedPacket& p, std::span<const std::uint8_t>,
                  std::uint64_t now_ns) override {
    if (last_ns_) {
      // A clock that steps back refills nothing.
      const std::uint64_t elapsed = now_ns > *last_ns_ ? now_ns - *last_ns_ : 0;
      if (pps_) pps_->refill(elapsed);
      if (bps_) bps_->refill(elapsed);
    }
    last_ns_ = std::max(now_ns, last_ns_.value_or(0));
    const std::uint64_t bits = std::uint64_t{p.wire()} * 8;
    if ((pps_ && !pps_->has(1)) || (bps_ && !bps_->has(bits))) return kReject;
    if (pps_) pps_->take(1);
    if (bps_) bps_->take(bits);
    return accept_with(0);
  }

 private:
  std::optional<TokenBucket> pps_, bps_;
  std::optional<std::uint64_t> last_ns_;
};

HashFields hash_fields(const FilterSpec& spec, const std::string& f) {
  if (f == "flow") return HashFields::flow;
  if (f == "addrs") return HashFields::addrs;
  if (f == "src") return HashFields::src;
  if (f == "dst") return HashFields::dst;
  fail(spec, "option 'fields' must be flow, addrs, src or dst, not '" + f + "'");
}

std::array<std::uint8_t, 2> be16(std::uint16_t v) {
  return {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v & 0xFFu)};
}

}  // namespace

std::uint32_t flow_hash(const ParsedPacket& p, HashFields fields) {
  if (!p.is_ip()) return 0;
  const std::size_t n = p.addr_len();
  std::span<const std::uint8_t> sa(p.saddr.data(), n), da(p.daddr.data(), n);
  switch (fields) {
    case HashFields::src:
      return hash_fnv1a(sa);
    case HashFields::dst:
      return hash_fnv1a(da);
    case HashFields::addrs: {
      if (std::memcmp(sa.data(), da.data(), n) > 0) std::swap(sa, da);
      return hash_fnv1a(da, hash_fnv1a(sa));
    }
    case HashFields::flow:
      break;
  }
  std::uint16_t sp = p.has_ports() ? p.sport : 0, dp = p.has_ports() ? p.dport : 0;
  const int cmp = std::memcmp(sa.data(), da.data(), n);
  if (cmp > 0 || (cmp == 0 && sp > dp)) {
    std::swap(sa, da);
    std::swap(sp, dp);
  }
  std::uint32_t h = hash_fnv1a(sa);
  h = hash_fnv1a(da, h);
  const std::uint8_t proto = p.l4_proto;
  h = hash_fnv1a(std::span(&proto, 1), h);
  h = hash_fnv1a(be16(sp), h);
  return hash_fnv1a(be16(dp), h);
}

bool has_reference_filter(std::string_view filter_name) {
  return std::any_of(kHeaderFilters.begin(), kHeaderFilters.end(),
                     [&](const HeaderEntry& e) { return e.name == filter_name; }) ||
         std::find(kOtherFilters.begin(), kOtherFilters.end(), filter_name) != kOtherFilters.end();
}

std::unique_ptr<ReferenceFilter> make_reference_filter(
    const FilterSpec& spec, const std::map<std::string, OptionValue>& options,
    const ClassicBpf* cbpf) {
  for (const auto& [key, value] : options)
    if (spec.option(key) == nullptr) fail(spec, "has no option '" + key + "'");
  const std::string_view name = spec.name;
  if (name == "port") return std::make_unique<PortFilter>(spec, which_option(spec, options));
  if (name == "addr")
    return std::make_unique<AddrFilter>(spec, *string_option(spec, options, "net"),
                                        which_option(spec, options));
  if (name == "len")
    return std::make_unique<LenFilter>(spec, int_option(spec, options, "min").value_or(0),
                                       int_option(spec, options, "max").value_or(65535));
  if (name == "hash") {
    const std::int64_t buckets = int_option(spec, options, "buckets").value_or(16);
    if (buckets < 1 || buckets > 65536) fail(spec, "option 'buckets' must be 1 to 65536");
    return std::make_unique<HashFilter>(
        spec, buckets, hash_fields(spec, string_option(spec, options, "fields").value_or("flow")));
  }
  if (name == "bpf")
    return std::make_unique<BpfFilter>(
        spec, cbpf ? to_bpf_insns(spec, *cbpf)
                   : compile_bpf(spec, *string_option(spec, options, "expr")));
  if (name == "count") return std::make_unique<CountFilter>(spec);
  if (name == "sample") {
    const std::int64_t n = *int_option(spec, options, "n");
    if (n < 1) fail(spec, "option 'n' must be at least 1");
    return std::make_unique<SampleFilter>(spec, n);
  }
  if (name == "rate") {
    auto pps = int_option(spec, options, "pps"), bps = int_option(spec, options, "bps");
    if ((pps && *pps < 1) || (bps && *bps < 1)) fail(spec, "pps and bps must be at least 1");
    return std::make_unique<RateFilter>(spec, pps, bps);
  }
  for (const auto& e : kHeaderFilters)
    if (e.name == name) return std::make_unique<HeaderFilter>(spec, e.fn);
  fail(spec,
       "has no reference implementation (only the L2-L4 header filters, bpf, count, "
       "sample, rate, drop, pass and tx have one)");
}

std::unique_ptr<ReferenceFilter> make_reference_filter(
    std::string_view filter_name, const std::map<std::string, OptionValue>& options,
    const ClassicBpf* cbpf) {
  const FilterSpec* spec = Catalog::builtin().find(filter_name);
  if (spec == nullptr)
    throw std::invalid_argument("no filter named '" + std::string(filter_name) +
                                "' in the catalog");
  return make_reference_filter(*spec, options, cbpf);
}

}  // namespace srl::filters
