// Engine inputs over AF_XDP and AF_PACKET sockets (inputs.h).
#include <net/if.h>

#include "srl/runtime/inputs.h"

#include <algorithm>
#include <filesystem>

namespace srl::runtime {
namespace {

class AfxdpInput final : public BlockInput {
 public:
  explicit AfxdpInput(std::unique_ptr<AfxdpChannel> channel) : channel_(std::move(channel)) {}
  std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> entries,
                      int timeout_ms) override {
    return channel_->receive(out, entries, timeout_ms);
  }
  bool done() const override { return false; }
  int wait_fd() const override { return channel_->fd(); }
  // "afxdp:DEV:QUEUE", as the datapath's connect steps name it.
  std::string name() const override {
    return "afxdp:" + channel_->device() + ":" + std::to_string(channel_->queue());
  }
  filters::FilterStats stats() const override {
    const auto s = channel_->stats();
    return {{"received", s.received},         {"bytes", s.bytes},
            {"bad_tag", s.bad_tag},           {"rx_dropped", s.rx_dropped},
            {"rx_ring_full", s.rx_ring_full}, {"rx_fill_ring_empty", s.rx_fill_ring_empty_descs}};
  }

 private:
  std::unique_ptr<AfxdpChannel> channel_;
};

class CopyRingInput final : public BlockInput {
 public:
  explicit CopyRingInput(std::unique_ptr<CopyRing> ring) : ring_(std::move(ring)) {}
  std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> entries,
                      int timeout_ms) override {
    return ring_->receive(out, entries, timeout_ms);
  }
  bool done() const override { return false; }
  int wait_fd() const override { return ring_->wait_fd(); }
  std::string name() const override { return ring_->name(); }
  filters::FilterStats stats() const override {
    const auto s = ring_->stats();
    return {{"received", s.received},       {"bytes", s.bytes},
            {"wire_bytes", s.wire_bytes},   {"truncated", s.truncated},
            {"bad_records", s.bad_records}, {"wakeups", s.wakeups}};
  }

 private:
  std::unique_ptr<CopyRing> ring_;
};

class PacketSocketInput final : public BlockInput {
 public:
  PacketSocketInput(std::unique_ptr<PacketSocketSource> socket, std::uint32_t entry)
      : socket_(std::move(socket)), bit_(std::uint32_t{1} << entry) {}
  std::size_t receive(std::span<filters::Block> out, std::span<std::uint32_t> entries,
                      int timeout_ms) override {
    std::size_t got = socket_->poll(out, 0);
    if (got == 0 && timeout_ms != 0 && socket_->wait(timeout_ms)) got = socket_->poll(out, 0);
    std::fill_n(entries.begin(), got, bit_);
    return got;
  }
  bool done() const override { return false; }
  int wait_fd() const override { return socket_->fd(); }
  std::string name() const override {
    char dev[IF_NAMESIZE] = "?";
    if_indextoname(static_cast<unsigned>(socket_->ifindex()), dev);
    return std::string("packet:") + dev;
  }
  filters::FilterStats stats() const override { return socket_->stats(); }

 private:
  std::unique_ptr<PacketSocketSource> socket_;
  std::uint32_t bit_;
};

}  // namespace

std::unique_ptr<BlockInput> afxdp_input(std::unique_ptr<AfxdpChannel> channel) {
  return std::make_unique<AfxdpInput>(std::move(channel));
}

std::unique_ptr<BlockInput> copy_ring_input(std::unique_ptr<CopyRing> ring) {
  return std::make_unique<CopyRingInput>(std::move(ring));
}

std::unique_ptr<BlockInput> packet_socket_input(std::unique_ptr<PacketSocketSource> socket,
                                                std::uint32_t entry) {
  return std::make_unique<PacketSocketInput>(std::move(socket), entry);
}

std::uint32_t rx_queue_count(const std::string& dev) {
  std::error_code ec;
  std::uint32_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net/" + dev + "/queues", ec))
    if (e.path().filename().string().starts_with("rx-")) ++n;
  return std::max<std::uint32_t>(n, 1);
}

}  // namespace srl::runtime
