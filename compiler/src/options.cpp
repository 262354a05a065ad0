// Pass "check-options": types every option a filter instance was given
// against the catalog's schema, fills in defaults, and checks what one
// option alone cannot say (required options, min <= max, regex syntax).
#include <arpa/inet.h>
#include <hs/hs.h>

#include <charconv>
#include <cstring>
#include <map>
#include <set>

#include "context.h"
#include "srl/compiler/utf8.h"

namespace srl::compiler {
namespace {

using filters::OptionSpec;
using filters::OptionType;
using filters::OptionValue;
using Kind = ast::Value::Kind;

constexpr std::string_view kSpaceNames[] = {"xdp", "tc", "user", "offload"};

std::string describe_value(const ast::Value& v) {
  switch (v.kind) {
    case Kind::ident:
      return "name '" + v.text + "'";
    case Kind::integer:
      return "number " + v.text;
    case Kind::string:
      return "string \"" + utf8::printable(v.text) + "\"";
    case Kind::cidr:
      return "address " + v.text;
  }
  return "value";
}

std::string list_choices(const std::vector<std::string_view>& choices) {
  std::string out;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += i + 1 == choices.size() ? " or " : ", ";
    out += std::string(choices[i]);
  }
  return out;
}

// A prefix in canonical form ("10.0.0.0/8"), or an error message. A bare
// address is a host prefix. Host bits set under the mask are refused, as
// tcpdump does, because they usually mean a typo in the prefix length.
std::variant<std::string, std::string> parse_cidr(const std::string& text) {
  const auto slash = text.find('/');
  const std::string addr = text.substr(0, slash);
  unsigned char bytes[16] = {};
  int family = addr.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  const unsigned max_len = family == AF_INET ? 32 : 128;
  if (inet_pton(family, addr.c_str(), bytes) != 1)
    return std::variant<std::string, std::string>(
        std::in_place_index<1>, family == AF_INET ? "expected an address such as 10.0.0.0/8"
                                                  : "expected an address such as 2001:db8::/32");
  unsigned len = max_len;
  if (slash != std::string::npos) {
    const std::string digits = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (ec != std::errc() || p != digits.data() + digits.size() || len > max_len)
      return std::variant<std::string, std::string>(
          std::in_place_index<1>, "the prefix length must be 0 to " + std::to_string(max_len));
  }
  const unsigned nbytes = max_len / 8;
  bool host_bits = false;
  unsigned char network[16] = {};
  for (unsigned i = 0; i < nbytes; ++i) {
    const unsigned bits_here = len >= (i + 1) * 8 ? 8 : len > i * 8 ? len - i * 8 : 0;
    const auto mask = static_cast<unsigned char>(bits_here == 0 ? 0 : 0xFF << (8 - bits_here));
    network[i] = static_cast<unsigned char>(bytes[i] & mask);
    if (network[i] != bytes[i]) host_bits = true;
  }
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, network, buf, sizeof buf);
  const std::string canonical = std::string(buf) + "/" + std::to_string(len);
  if (host_bits)
    return std::variant<std::string, std::string>(
        std::in_place_index<1>, "bits are set outside the /" + std::to_string(len) +
                                    " prefix; did you mean " + canonical + "?");
  return std::variant<std::string, std::string>(std::in_place_index<0>, canonical);
}

unsigned hyperscan_flags(const std::string& letters) {
  unsigned flags = 0;
  for (char c : letters) {
    if (c == 'i') flags |= HS_FLAG_CASELESS;
    if (c == 's') flags |= HS_FLAG_DOTALL;
    if (c == 'm') flags |= HS_FLAG_MULTILINE;
    if (c == 'u') flags |= HS_FLAG_UTF8 | HS_FLAG_UCP;
  }
  return flags;
}

class OptionChecker {
 public:
  explicit OptionChecker(CompileContext& cx) : cx_(cx) {}

  void check(DagNode& node) {
    const ast::Node& atom = *node.origin;
    const filters::FilterSpec& spec = *node.filter;
    std::map<std::string, const ast::Option*> seen;
    std::map<std::string, Loc> locs;
    std::set<std::string> typos;  // options probably meant by unknown ones
    for (const auto& opt : atom.options) {
      if (auto [it, fresh] = seen.emplace(opt.name, &opt); !fresh) {
        auto& d = cx_.diags.error(opt.name_loc,
                                  "option '" + opt.name + "' given twice; expected it once");
        cx_.diags.note(d, it->second->name_loc, "first given here");
        continue;
      }
      if (opt.name == "name") continue;  // resolve-names checked it
      if (opt.name == "space") {
        check_space(node, opt);
        continue;
      }
      const OptionSpec* os = spec.option(opt.name);
      if (os == nullptr) {
        if (auto near = unknown_option(spec, opt)) typos.insert(std::string(*near));
        continue;
      }
      if (auto v = typed(spec, *os, opt.value)) node.options[std::string(os->name)] = std::move(*v);
      locs[opt.name] = opt.value.loc;
    }
    for (const auto& os : spec.options) {
      const std::string key(os.name);
      if (node.options.contains(key) || seen.contains(key) || typos.contains(key)) continue;
      if (os.required)
        cx_.diags.error(node.loc, "filter '" + std::string(spec.name) + "' needs option '" + key +
                                      "' (" + std::string(os.help) + "); expected (" +
                                      std::string(spec.name) + ", " + key + "=...)");
      else if (os.default_value)
        node.options[key] = *os.default_value;
    }
    cross_checks(node, locs);
  }

 private:
  void check_space(DagNode& node, const ast::Option& opt) {
    const std::string& s = opt.value.text;
    const bool known =
        (opt.value.kind == Kind::ident || opt.value.kind == Kind::string) &&
        std::find(std::begin(kSpaceNames), std::end(kSpaceNames), s) != std::end(kSpaceNames);
    if (!known) {
      cx_.diags.error(opt.value.loc, "unknown space " + describe_value(opt.value) +
                                         "; expected xdp, tc, user or offload");
      return;
    }
    const auto kind = s == "user"      ? filters::SpaceKind::user
                      : s == "offload" ? filters::SpaceKind::offload
                                       : filters::SpaceKind::kernel;
    if (!node.filter->implemented_in(kind)) {
      std::string where;
      for (std::size_t i = 0; i < filters::kSpaceKinds; ++i) {
        const auto k = static_cast<filters::SpaceKind>(i);
        if (!node.filter->implemented_in(k)) continue;
        if (!where.empty()) where += ", space=";
        where +=
            k == filters::SpaceKind::kernel ? "xdp, space=tc" : std::string(filters::to_string(k));
      }
      cx_.diags.error(opt.value.loc, "filter '" + std::string(node.filter->name) +
                                         "' has no implementation in space '" + s +
                                         "'; expected space=" + where + " or no space=");
      return;
    }
    node.space = s;
  }

  // Reports an unknown option; returns the option it was probably meant to be.
  std::optional<std::string_view> unknown_option(const filters::FilterSpec& spec,
                                                 const ast::Option& opt) {
    std::string msg =
        "unknown option '" + opt.name + "' for filter '" + std::string(spec.name) + "'";
    std::vector<std::string_view> names;
    for (const auto& o : spec.options)
      names.push_back(o.name);
    names.push_back("name");
    names.push_back("space");
    const auto near = filters::nearest_name(opt.name, names);
    if (near) {
      msg += "; did you mean '" + std::string(*near) + "'?";
    } else if (spec.options.empty()) {
      msg += "; '" + std::string(spec.name) + "' takes only name= and space=";
    } else {
      msg += "; expected ";
      std::vector<std::string_view> opts;
      for (const auto& o : spec.options)
        opts.push_back(o.name);
      opts.push_back("name");
      opts.push_back("space");
      msg += list_choices(opts);
    }
    cx_.diags.error(opt.name_loc, msg);
    return near;
  }

  std::optional<OptionValue> typed(const filters::FilterSpec& spec, const OptionSpec& os,
                                   const ast::Value& v) {
    const std::string what =
        "option '" + std::string(os.name) + "' of '" + std::string(spec.name) + "'";
    auto fail = [&](const std::string& expected) {
      cx_.diags.error(v.loc,
                      "invalid " + describe_value(v) + " for " + what + "; expected " + expected);
      return std::optional<OptionValue>();
    };
    const bool textual = v.kind == Kind::ident || v.kind == Kind::string;
    switch (os.type) {
      case OptionType::string:
      case OptionType::regex:
      case OptionType::bpf_expr:
        if (!textual) return fail("a string in double quotes");
        return OptionValue(v.text);
      case OptionType::path:
        if (!textual || v.text.empty()) return fail("a file name");
        if (v.text.find('\0') != std::string::npos) return fail("a file name without NUL bytes");
        return OptionValue(v.text);
      case OptionType::device:
        if (!textual || v.text.empty() || v.text.size() > 15 ||
            v.text.find_first_of("/ \t:") != std::string::npos)
          return fail("an interface name of 1 to 15 characters without '/', ':' or spaces");
        return OptionValue(v.text);
      case OptionType::integer: {
        const std::string range =
            "an integer from " + std::to_string(os.min) + " to " + std::to_string(os.max);
        if (v.kind == Kind::string) return fail(range + " (written without quotes)");
        if (v.kind != Kind::integer) return fail(range);
        std::int64_t n = 0;
        auto [p, ec] = std::from_chars(v.text.data(), v.text.data() + v.text.size(), n);
        if (ec != std::errc() || n < os.min || n > os.max) return fail(range);
        return OptionValue(n);
      }
      case OptionType::boolean: {
        static const std::map<std::string, bool, std::less<>> words = {
            {"true", true},   {"yes", true}, {"on", true},   {"1", true},
            {"false", false}, {"no", false}, {"off", false}, {"0", false}};
        if (auto it = words.find(v.text); it != words.end() && v.kind != Kind::cidr)
          return OptionValue(it->second);
        return fail("true or false");
      }
      case OptionType::choice: {
        if (textual)
          for (auto c : os.choices)
            if (c == v.text) return OptionValue(v.text);
        std::string expected = list_choices(os.choices);
        if (textual) {
          if (auto near = filters::nearest_name(v.text, os.choices))
            expected += " (did you mean '" + std::string(*near) + "'?)";
        }
        return fail(expected);
      }
      case OptionType::cidr: {
        if (v.kind != Kind::cidr && v.kind != Kind::string)
          return fail("an address prefix such as 10.0.0.0/8 or 2001:db8::/32");
        auto parsed = parse_cidr(v.text);
        if (parsed.index() == 1) {
          cx_.diags.error(
              v.loc, "invalid " + describe_value(v) + " for " + what + ": " + std::get<1>(parsed));
          return std::nullopt;
        }
        return OptionValue(std::get<0>(parsed));
      }
    }
    return std::nullopt;
  }

  void cross_checks(DagNode& node, const std::map<std::string, Loc>& locs) {
    const std::string_view f = node.filter->name;
    auto integer = [&](const char* key) -> std::optional<std::int64_t> {
      auto it = node.options.find(key);
      if (it == node.options.end()) return std::nullopt;
      return std::get<std::int64_t>(it->second);
    };
    auto loc_of = [&](const char* key) {
      auto it = locs.find(key);
      return it != locs.end() ? it->second : node.loc;
    };
    if (f == "len") {
      auto lo = integer("min"), hi = integer("max");
      if (lo && hi && *lo > *hi)
        cx_.diags.error(loc_of("min"), "len min=" + std::to_string(*lo) + " is above max=" +
                                           std::to_string(*hi) + "; expected min <= max");
    } else if (f == "rate") {
      if (!node.options.contains("pps") && !node.options.contains("bps"))
        cx_.diags.error(node.loc,
                        "filter 'rate' needs a limit; expected (rate, pps=N) or (rate, bps=N)");
    } else if (f == "match") {
      // flags may be absent when it was given with a bad value (reported).
      auto flags = node.options.find("flags");
      if (flags == node.options.end()) return;
      const auto& letters = std::get<std::string>(flags->second);
      for (std::size_t i = 0; i < letters.size(); ++i) {
        if (std::strchr("ismu", letters[i]) == nullptr) {
          cx_.diags.error(loc_of("flags"), std::string("unknown match flag '") + letters[i] +
                                               "'; expected letters from i, s, m, u");
          return;
        }
      }
      auto it = node.options.find("pattern");
      if (it == node.options.end()) return;
      const auto& pattern = std::get<std::string>(it->second);
      hs_expr_info_t* info = nullptr;
      hs_compile_error_t* err = nullptr;
      if (hs_expression_info(pattern.c_str(), hyperscan_flags(letters), &info, &err) !=
          HS_SUCCESS) {
        std::string why = err != nullptr ? err->message : "unknown error";
        while (!why.empty() && why.back() == '.')
          why.pop_back();
        cx_.diags.error(loc_of("pattern"), "invalid pattern for 'match': " + why +
                                               "; expected a regular expression Hyperscan accepts");
        hs_free_compile_error(err);
        return;
      }
      if (info != nullptr && info->min_width == 0)
        cx_.diags.error(loc_of("pattern"),
                        "pattern for 'match' matches the empty string, so "
                        "every block would match; expected a pattern that "
                        "needs at least one byte");
      std::free(info);
    }
  }

  CompileContext& cx_;
};

}  // namespace

void check_options(CompileContext& cx) {
  OptionChecker checker(cx);
  auto& g = cx.dag->graph;
  for (auto [it, end] = boost::vertices(g); it != end && !cx.diags.too_many(); ++it)
    if (g[*it].origin != nullptr) checker.check(g[*it]);
}

}  // namespace srl::compiler
