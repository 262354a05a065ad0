// The daemon's structured log: one line per event on standard error (which
// systemd's journal keeps), as key=value text or as JSON objects.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace srl::controld::log {

enum class Format { text, json };
void set_format(Format f);

using Fields = std::vector<std::pair<std::string, std::string>>;

// `level`: "info", "warning" or "error"; `event`: what happened
// ("step", "transaction", "refused", ...).
void event(std::string_view level, std::string_view event, const Fields& fields);

}  // namespace srl::controld::log
