// The structured log (log.h).
#include "log.h"

#include <iostream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "srl/optimizer/profile.h"

namespace srl::controld::log {
namespace {

std::mutex g_mutex;
Format g_format = Format::text;

// key=value, the value quoted when it has spaces, quotes or '='.
std::string text_value(const std::string& v) {
  if (!v.empty() && v.find_first_of(" \"=\t\n") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

}  // namespace

void set_format(Format f) {
  std::lock_guard lock(g_mutex);
  g_format = f;
}

void event(std::string_view level, std::string_view event, const Fields& fields) {
  const auto time = optimizer::now_utc();
  std::string line;
  std::lock_guard lock(g_mutex);
  if (g_format == Format::json) {
    nlohmann::ordered_json j;
    j["time"] = time;
    j["level"] = level;
    j["event"] = event;
    for (const auto& [k, v] : fields)
      j[k] = v;
    line = j.dump();
  } else {
    line = time + " " + std::string(level) + " " + std::string(event);
    for (const auto& [k, v] : fields)
      line += " " + k + "=" + text_value(v);
  }
  std::cerr << line << "\n" << std::flush;
}

}  // namespace srl::controld::log
