// The userspace registry: filter name -> implementation, plus the option
// readers every implementation shares.
#include <algorithm>
#include <array>
#include <stdexcept>
#include <string_view>

#include "factories.h"

namespace srl::filters {
namespace {

using FilterFactory = std::unique_ptr<UserFilter> (*)(const UserFilterConfig&);

struct Entry {
  std::string_view name;
  FilterFactory make;
};

// Header filters come from the reference implementations; the rest each
// have a factory of their own.
constexpr std::array kFilters{
    Entry{"eth", user::make_header_filter},
    Entry{"arp", user::make_header_filter},
    Entry{"vlan", user::make_header_filter},
    Entry{"ip", user::make_header_filter},
    Entry{"ipv4", user::make_header_filter},
    Entry{"ipv6", user::make_header_filter},
    Entry{"icmp", user::make_header_filter},
    Entry{"tcp", user::make_header_filter},
    Entry{"udp", user::make_header_filter},
    Entry{"proto", user::make_header_filter},
    Entry{"port", user::make_header_filter},
    Entry{"addr", user::make_header_filter},
    Entry{"tcpflags", user::make_header_filter},
    Entry{"len", user::make_header_filter},
    Entry{"hash", user::make_header_filter},
    Entry{"bpf", user::make_header_filter},
    Entry{"count", user::make_count},
    Entry{"sample", user::make_header_filter},
    Entry{"rate", user::make_header_filter},
    Entry{"drop", user::make_header_filter},
    Entry{"pass", user::make_header_filter},
    Entry{"tx", user::make_tx},
    Entry{"tcpstream", user::make_tcpstream},
    Entry{"http", user::make_http},
    Entry{"ssh", user::make_ssh},
    Entry{"rtsp", user::make_rtsp},
    Entry{"dns", user::make_dns},
    Entry{"tls", user::make_tls},
    Entry{"match", user::make_match},
    Entry{"pcap", user::make_pcap_sink},
    Entry{"print", user::make_print_sink},
    Entry{"file", user::make_file_sink},
    Entry{"fifo", user::make_fifo_sink},
};

const Entry* find_filter(std::string_view name) {
  auto it = std::find_if(kFilters.begin(), kFilters.end(),
                         [&](const Entry& e) { return e.name == name; });
  return it == kFilters.end() ? nullptr : &*it;
}

const OptionSpec& option_spec(const UserFilterConfig& config, std::string_view name) {
  const OptionSpec* os = config.spec->option(name);
  if (os == nullptr) config_error(config, "the catalog has no option '" + std::string(name) + "'");
  return *os;
}

std::optional<OptionValue> option(const UserFilterConfig& config, std::string_view name) {
  const OptionSpec& os = option_spec(config, name);
  if (auto it = config.options.find(std::string(name)); it != config.options.end())
    return it->second;
  return os.default_value;
}

void check(const UserFilterConfig& config) {
  if (config.spec == nullptr)
    throw std::invalid_argument("node " + config.node_id + ": no filter given");
  for (const auto& [key, value] : config.options)
    if (config.spec->option(key) == nullptr) config_error(config, "has no option '" + key + "'");
  for (const auto& os : config.spec->options)
    if (os.required && !config.options.contains(std::string(os.name)))
      config_error(config, "option '" + std::string(os.name) + "' is required");
}

}  // namespace

[[noreturn]] void config_error(const UserFilterConfig& config, const std::string& what) {
  throw std::invalid_argument("node " + (config.node_id.empty() ? "?" : config.node_id) + " (" +
                              std::string(config.spec ? config.spec->name : "?") + "): " + what);
}

std::optional<std::int64_t> int_option(const UserFilterConfig& config, std::string_view name) {
  auto v = option(config, name);
  if (!v) return std::nullopt;
  if (const auto* i = std::get_if<std::int64_t>(&*v)) return *i;
  config_error(config, "option '" + std::string(name) + "' must be an integer");
}

std::optional<std::string> string_option(const UserFilterConfig& config, std::string_view name) {
  auto v = option(config, name);
  if (!v) return std::nullopt;
  if (auto* s = std::get_if<std::string>(&*v)) return std::move(*s);
  config_error(config, "option '" + std::string(name) + "' must be a string");
}

std::optional<bool> bool_option(const UserFilterConfig& config, std::string_view name) {
  auto v = option(config, name);
  if (!v) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&*v)) return *b;
  config_error(config, "option '" + std::string(name) + "' must be true or false");
}

bool has_user_filter(std::string_view filter_name) {
  return find_filter(filter_name) != nullptr;
}

bool has_user_source(std::string_view filter_name) {
  return filter_name == "pcapin";
}

std::unique_ptr<UserFilter> make_user_filter(const UserFilterConfig& config) {
  check(config);
  const Entry* e = find_filter(config.spec->name);
  if (e == nullptr)
    config_error(config, config.spec->role == Role::source ? "is a source, not a filter"
                                                           : "has no userspace implementation");
  return e->make(config);
}

std::unique_ptr<UserSource> make_user_source(const UserFilterConfig& config) {
  check(config);
  if (config.spec->name == "pcapin") return user::make_pcapin(config);
  config_error(config, "has no userspace source implementation");
}

}  // namespace srl::filters
