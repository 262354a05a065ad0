// Small UTF-8 helpers for positions and for quoting user text safely.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace srl::compiler::utf8 {

// Length of the sequence a lead byte starts (1 for invalid lead bytes, so
// that walking a string always advances).
inline std::size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Byte offset of the first invalid sequence, or nothing when all is valid.
std::optional<std::size_t> first_invalid(std::string_view s);

// The text with control characters shown as \xNN, so that quoting a line of
// user input never moves the terminal's cursor.
std::string printable(std::string_view s);

// Number of code points in s.
std::size_t length(std::string_view s);

}  // namespace srl::compiler::utf8
