#include "srl/compiler/utf8.h"

#include <cstdio>

namespace srl::compiler::utf8 {

std::optional<std::size_t> first_invalid(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    const std::size_t n = sequence_length(lead);
    if (lead >= 0x80 && n == 1) return i;
    if (i + n > s.size()) return i;
    std::uint32_t cp = n == 1   ? lead
                       : n == 2 ? (lead & 0x1Fu)
                       : n == 3 ? (lead & 0x0Fu)
                                : (lead & 0x07u);
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    const std::uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += n;
  }
  return std::nullopt;
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto escape = [&](unsigned char u) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", u);
    out += buf;
  };
  for (std::size_t i = 0; i < s.size();) {
    const auto u = static_cast<unsigned char>(s[i]);
    const std::size_t n = sequence_length(u);
    if (u >= 0x80) {
      // Keep valid multi-byte characters; escape bytes of broken ones.
      if (n > 1 && i + n <= s.size() && !first_invalid(s.substr(i, n))) {
        out.append(s.substr(i, n));
        i += n;
      } else {
        escape(u);
        ++i;
      }
      continue;
    }
    if ((u < 0x20 && u != '\t') || u == 0x7F)
      escape(u);
    else
      out += static_cast<char>(u);
    ++i;
  }
  return out;
}

std::size_t length(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); i += sequence_length(static_cast<unsigned char>(s[i])))
    ++n;
  return n;
}

}  // namespace srl::compiler::utf8
