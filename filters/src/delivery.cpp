// The copy-or-take rule (delivery.h).
#include "srl/filters/delivery.h"

#include <algorithm>
#include <deque>

namespace srl::filters {

std::string_view to_string(Delivery d) {
  return d == Delivery::take ? "take" : "copy";
}

namespace {
const std::string* string_option(const Options& options, const char* key) {
  const auto it = options.find(key);
  if (it == options.end()) return nullptr;
  return std::get_if<std::string>(&it->second);
}
}  // namespace

bool drops_accepted(const FilterSpec& spec) {
  return spec.name == "drop";
}

bool consumes_block(const FilterSpec& spec, const Options& options) {
  if (drops_accepted(spec)) return true;
  if (spec.name == "tx") {
    const auto* mode = string_option(options, "mode");
    return mode != nullptr && *mode == "forward";
  }
  return false;
}

std::uint32_t bytes_needed(const FilterSpec& spec, const Options& options) {
  if (spec.name == "pcap") {
    const auto it = options.find("snaplen");
    if (it != options.end())
      if (const auto* n = std::get_if<std::int64_t>(&it->second))
        return static_cast<std::uint32_t>(std::clamp<std::int64_t>(*n, 1, kFullSnap));
    return kFullSnap;
  }
  // Sinks that write or send the block whole, and filters that look past
  // the headers.
  if (spec.name == "fifo" || spec.name == "file" || spec.name == "tx" || spec.reads_payload ||
      spec.emits_new_blocks)
    return kFullSnap;
  return kHeaderSnap;
}

std::vector<std::size_t> consumers_below(const std::vector<std::vector<std::size_t>>& children,
                                         const std::vector<bool>& consumes) {
  const std::size_t n = children.size();
  std::vector<std::size_t> out(n, kNone);
  for (std::size_t v = 0; v < n; ++v) {
    // Breadth first, so the consumer named is the nearest one.
    std::vector<bool> seen(n, false);
    std::deque<std::size_t> queue{v};
    seen[v] = true;
    while (!queue.empty() && out[v] == kNone) {
      const std::size_t u = queue.front();
      queue.pop_front();
      if (consumes[u]) {
        out[v] = u;
        break;
      }
      for (std::size_t c : children[u])
        if (!seen[c]) {
          seen[c] = true;
          queue.push_back(c);
        }
    }
  }
  return out;
}

}  // namespace srl::filters
