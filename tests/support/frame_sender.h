// Sends whole Ethernet frames out of a device of the calling thread's
// network namespace through a packet socket: how the tests on veth pairs
// put frames on the wire. Test support.
#pragma once

#include <doctest/doctest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <span>

namespace srl::testing {

class FrameSender {
 public:
  explicit FrameSender(const char* dev) : fd_(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)) {
    REQUIRE(fd_ >= 0);
    to_.sll_family = AF_PACKET;
    to_.sll_ifindex = static_cast<int>(if_nametoindex(dev));
    to_.sll_halen = ETH_ALEN;
    REQUIRE(to_.sll_ifindex > 0);
  }
  ~FrameSender() { close(fd_); }
  FrameSender(const FrameSender&) = delete;
  FrameSender& operator=(const FrameSender&) = delete;

  void send(std::span<const std::uint8_t> frame) {
    const auto n = sendto(fd_, frame.data(), frame.size(), 0,
                          reinterpret_cast<const sockaddr*>(&to_), sizeof to_);
    REQUIRE(n == static_cast<ssize_t>(frame.size()));
  }

 private:
  int fd_;
  sockaddr_ll to_{};
};

}  // namespace srl::testing
