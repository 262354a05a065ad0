// tx in userspace: transmits packet blocks on a device through an AF_PACKET
// socket (the frame as it is, FCS added by the device). Stream chunks are
// not frames: they are counted and not sent. A send that fails (the queue is
// full, the device went down) drops the block and counts it: the datapath
// never waits on a device.
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "factories.h"

namespace srl::filters::user {
namespace {

class TxSink final : public UserFilter {
 public:
  TxSink(const UserFilterConfig& config, const std::string& dev) {
    const unsigned ifindex = if_nametoindex(dev.c_str());
    if (ifindex == 0) config_error(config, "no network device '" + dev + "'");
    fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0)
      config_error(config, "cannot open a packet socket to transmit on " + dev +
                               " (needs CAP_NET_RAW): " + std::strerror(errno));
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_ifindex = static_cast<int>(ifindex);
    addr.sll_protocol = 0;  // transmit only: receives nothing
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      const int err = errno;
      ::close(fd_);
      config_error(config, "cannot bind a packet socket to " + dev + ": " + std::strerror(err));
    }
  }
  ~TxSink() override { ::close(fd_); }

  bool reads_headers() const override { return false; }

  void process(const Block& block, Emitter&) override {
    if (block.kind != BlockKind::packet) {
      ++skipped_streams_;
      return;
    }
    if (block.data.size() < 14) {
      ++errors_;  // shorter than an Ethernet header: the device would refuse it
      return;
    }
    if (::send(fd_, block.data.data(), block.data.size(), MSG_DONTWAIT) ==
        static_cast<ssize_t>(block.data.size())) {
      ++sent_;
      bytes_ += block.data.size();
    } else {
      ++errors_;
    }
  }

  FilterStats stats() const override {
    return {{"sent", sent_},
            {"bytes", bytes_},
            {"send_errors", errors_},
            {"skipped_streams", skipped_streams_}};
  }

 private:
  int fd_ = -1;
  std::uint64_t sent_ = 0, bytes_ = 0, errors_ = 0, skipped_streams_ = 0;
};

}  // namespace

std::unique_ptr<UserFilter> make_tx(const UserFilterConfig& config) {
  const auto dev = string_option(config, "dev");
  if (!dev || dev->empty()) config_error(config, "option 'dev' is required");
  return std::make_unique<TxSink>(config, *dev);
}

}  // namespace srl::filters::user
