// The L2-L4 filters in userspace: the reference implementations behind the
// UserFilter interface, and the payload helpers protocol filters share.
#include <algorithm>
#include <map>

#include "factories.h"

namespace srl::filters {
namespace {

std::uint16_t be16_at(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}

// The reference filters read headers; on a stream chunk there are none, so
// only the filters that look at a block as a whole (count, sample, rate,
// len, drop, pass) take one, seeing its length.
bool takes_streams(std::string_view name) {
  return name == "count" || name == "sample" || name == "rate" || name == "len" || name == "drop" ||
         name == "pass";
}

class HeaderFilter final : public UserFilter {
 public:
  HeaderFilter(std::unique_ptr<ReferenceFilter> ref, bool streams)
      : ref_(std::move(ref)), streams_(streams) {}

  void process(const Block& block, Emitter& out) override {
    Verdict v;
    if (block.kind == BlockKind::packet) {
      // The hot path: headers parsed once by whoever made the block.
      v = block.parsed
              ? ref_->process(*block.parsed, block.data, block.ts_ns)
              : ref_->process(parse_packet(block.data, block.wire_len), block.data, block.ts_ns);
    } else {
      if (!streams_) return;
      ParsedPacket whole;
      whole.len = whole.wire_len = static_cast<std::uint32_t>(block.data.size());
      v = ref_->process(whole, block.data, block.ts_ns);
    }
    if (v.accept) out.accept(v.cls);
  }

 private:
  std::unique_ptr<ReferenceFilter> ref_;
  bool streams_;
};

// count, by=class: blocks and bytes per class of its input, the first
// `keys` classes it sees each a tally of its own, the rest one tally
// ("other"), so that what it holds stays bounded whatever the traffic.
// The engine counts the node's totals.
class ClassCountFilter final : public UserFilter {
 public:
  explicit ClassCountFilter(std::size_t keys) : keys_(keys) {}

  void process(const Block& block, Emitter& out) override {
    std::uint32_t cls = out.input_class();
    auto it = tallies_.find(cls);
    if (it == tallies_.end()) {
      if (tallies_.size() - (tallies_.contains(kOtherClasses) ? 1 : 0) >= keys_)
        cls = kOtherClasses;
      it = tallies_.try_emplace(cls, ClassTally{cls, 0, 0}).first;
    }
    ++it->second.blocks;
    it->second.bytes += block.wire();
    out.accept(0);
  }
  bool reads_headers() const override { return false; }
  bool counts_by_class() const override { return true; }
  std::vector<ClassTally> class_tallies() const override {
    std::vector<ClassTally> out;
    out.reserve(tallies_.size());
    for (const auto& [cls, t] : tallies_)  // by class: kOtherClasses last
      out.push_back(t);
    return out;
  }

 private:
  std::size_t keys_;
  std::map<std::uint32_t, ClassTally> tallies_;
};

}  // namespace

std::span<const std::uint8_t> l4_payload(const ParsedPacket& p,
                                         std::span<const std::uint8_t> frame) {
  if (p.l4 == L4Kind::none || p.non_first_fragment) return {};
  // The end of the IP datagram, so that Ethernet padding is not payload.
  std::size_t end = frame.size();
  if (p.l3 == L3Kind::ipv4 && p.l3_offset + 4 <= frame.size())
    end = std::min(end, p.l3_offset + std::size_t{be16_at(frame, p.l3_offset + 2)});
  else if (p.l3 == L3Kind::ipv6 && p.l3_offset + 6 <= frame.size())
    end = std::min(end, p.l3_offset + 40 + std::size_t{be16_at(frame, p.l3_offset + 4)});
  std::size_t header = 8;
  if (p.l4 == L4Kind::tcp) {
    if (p.l4_offset + 13 > frame.size()) return {};
    header = std::size_t{frame[p.l4_offset + 12]} >> 4 << 2;
    if (header < 20) return {};
  }
  const std::size_t start = p.l4_offset + header;
  if (start >= end) return {};
  return frame.subspan(start, end - start);
}

std::span<const std::uint8_t> payload_of(const Block& block) {
  if (block.kind == BlockKind::stream) return block.data;
  ParsedPacket scratch;
  return l4_payload(headers_of(block, scratch), block.data);
}

const ParsedPacket& headers_of(const Block& block, ParsedPacket& scratch) {
  if (block.parsed != nullptr) return *block.parsed;
  scratch = parse_packet(block.data, block.wire_len);
  return scratch;
}

namespace user {

std::unique_ptr<UserFilter> make_count(const UserFilterConfig& config) {
  const auto by = config.options.find("by");
  if (by != config.options.end() && std::get<std::string>(by->second) == "class") {
    const auto keys = config.options.find("keys");
    return std::make_unique<ClassCountFilter>(
        keys != config.options.end()
            ? static_cast<std::size_t>(std::get<std::int64_t>(keys->second))
            : 256);
  }
  return make_header_filter(config);
}

std::unique_ptr<UserFilter> make_header_filter(const UserFilterConfig& config) {
  try {
    return std::make_unique<HeaderFilter>(
        make_reference_filter(*config.spec, config.options, config.cbpf),
        takes_streams(config.spec->name));
  } catch (const std::invalid_argument& e) {
    config_error(config, e.what());
  }
}

}  // namespace user
}  // namespace srl::filters
