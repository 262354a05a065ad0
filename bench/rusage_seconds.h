// A getrusage() time in seconds, for the traffic tools' closing lines.
#pragma once

#include <sys/time.h>

namespace srl::bench {

inline double seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

}  // namespace srl::bench
