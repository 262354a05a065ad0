// `rx` in userspace over AF_PACKET with a TPACKET_V3 ring: the kernel fills
// whole blocks of frames and hands each over once full or timed out; we read
// the frames in place and hand the block back when all of them are done.
#include "srl/runtime/packet_socket.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace srl::runtime {
namespace {

constexpr std::size_t kAlign = TPACKET_ALIGNMENT;
constexpr std::size_t aligned(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}
// Where the kernel writes the sockaddr_ll of each frame, after its header.
constexpr std::size_t kAddrOffset = aligned(sizeof(tpacket3_hdr));
constexpr std::size_t kHeaderEnd = kAddrOffset + sizeof(sockaddr_ll);
constexpr std::uint32_t kFrameSize = 2048;  // V3 frames vary; the kernel checks the block math
constexpr std::size_t kVlanTag = 4;

template <typename T>
T* at(std::uint8_t* p) {
  return static_cast<T*>(static_cast<void*>(p));
}

}  // namespace

PacketSocketSource::PacketSocketSource(const PacketSocketOptions& options) : options_(options) {
  const std::string where = "rx on " + options_.dev;
  if (options_.dev.empty()) throw std::invalid_argument("rx: no device given");
  if (options_.dev.size() >= IFNAMSIZ)
    throw std::invalid_argument(where + ": device name longer than " +
                                std::to_string(IFNAMSIZ - 1) + " characters");
  const auto page = static_cast<std::uint32_t>(sysconf(_SC_PAGESIZE));
  if (options_.block_size < page || options_.block_size % page != 0)
    throw std::invalid_argument(where + ": block size must be a multiple of " +
                                std::to_string(page) + " bytes");
  if (options_.block_count == 0) throw std::invalid_argument(where + ": no blocks");

  auto fail = [&](int err, const std::string& what) {
    close_all();
    throw std::system_error(err, std::generic_category(), where + ": " + what);
  };

  // Protocol 0: nothing is queued before bind(), which then names both the
  // device and ETH_P_ALL; otherwise frames of every device would arrive
  // until then.
  fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    const int err = errno;
    if (err == EPERM || err == EACCES) fail(err, "cannot open a packet socket (needs CAP_NET_RAW)");
    fail(err, "cannot open a packet socket");
  }
  ifindex_ = static_cast<int>(if_nametoindex(options_.dev.c_str()));
  if (ifindex_ == 0) fail(errno == 0 ? ENODEV : errno, "no such device");

  int version = TPACKET_V3;
  if (setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0)
    fail(errno, "cannot select TPACKET_V3");
  tpacket_req3 req{};
  req.tp_block_size = options_.block_size;
  req.tp_block_nr = options_.block_count;
  req.tp_frame_size = kFrameSize;
  req.tp_frame_nr = options_.block_size / kFrameSize * options_.block_count;
  req.tp_retire_blk_tov = options_.block_timeout_ms;
  if (setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0)
    fail(errno, "cannot set up the receive ring");
  ring_size_ = std::size_t{options_.block_size} * options_.block_count;
  void* ring = mmap(nullptr, ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (ring == MAP_FAILED) {
    ring_size_ = 0;
    fail(errno, "cannot map the receive ring");
  }
  ring_ = static_cast<std::uint8_t*>(ring);

  if (options_.ignore_outgoing) {
    // Saves the kernel the copies; frames are also checked one by one, for
    // kernels without the option.
    int one = 1;
    setsockopt(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  }

  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = ifindex_;
  if (bind(fd_, static_cast<sockaddr*>(static_cast<void*>(&addr)), sizeof addr) != 0)
    fail(errno, errno == ENODEV || errno == ENXIO ? "no such device" : "cannot bind");
}

PacketSocketSource::~PacketSocketSource() {
  close_all();
}

void PacketSocketSource::close_all() {
  if (ring_ != nullptr) munmap(ring_, ring_size_);
  ring_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::uint8_t* PacketSocketSource::block(std::uint32_t i) const {
  return ring_ + std::size_t{i} * options_.block_size;
}

bool PacketSocketSource::ready(std::uint32_t i) const {
  auto& status = at<tpacket_block_desc>(block(i))->hdr.bh1.block_status;
  return (std::atomic_ref<std::uint32_t>(status).load(std::memory_order_acquire) &
          TP_STATUS_USER) != 0;
}

void PacketSocketSource::release(std::uint32_t i) {
  auto& status = at<tpacket_block_desc>(block(i))->hdr.bh1.block_status;
  std::atomic_ref<std::uint32_t>(status).store(TP_STATUS_KERNEL, std::memory_order_release);
}

// The block read next is there and not one we still hold for the caller.
bool PacketSocketSource::next_ready() const {
  if (open_) return true;
  if (!done_.empty() && done_.front() == current_) return false;
  return ready(current_);
}

std::size_t PacketSocketSource::poll(std::span<filters::Block> out, std::uint64_t now_ns) {
  (void)now_ns;
  for (const std::uint32_t b : done_)
    release(b);
  done_.clear();
  if (parsed_.size() < out.size()) {
    parsed_.resize(out.size());
    scratch_.resize(out.size());
  }

  std::size_t k = 0;
  while (k < out.size() && next_ready()) {
    std::uint8_t* const blk = block(current_);
    if (!open_) {
      const auto& bh = at<tpacket_block_desc>(blk)->hdr.bh1;
      left_ = bh.num_pkts;
      offset_ = bh.offset_to_first_pkt;
      open_ = true;
    }
    if (left_ > 0) {
      std::uint8_t* const here = blk + offset_;
      auto* const h = at<tpacket3_hdr>(here);
      const auto* const ll = at<sockaddr_ll>(here + kAddrOffset);
      --left_;
      offset_ += h->tp_next_offset;
      if (ll->sll_pkttype == PACKET_OUTGOING && options_.ignore_outgoing) {
        ++counts_.outgoing;
      } else {
        std::uint8_t* data = here + h->tp_mac;
        std::size_t len = h->tp_snaplen;
        std::uint32_t wire = h->tp_len;
        if ((h->tp_status & TP_STATUS_VLAN_VALID) != 0 && len >= 2 * ETH_ALEN) {
          // The stack took the outer VLAN tag out of the frame into
          // metadata: put it back, so filters see the frame as it was on
          // the wire. In place when the gap before the frame allows it.
          const auto tpid = static_cast<std::uint16_t>(
              (h->tp_status & TP_STATUS_VLAN_TPID_VALID) != 0 ? h->hv1.tp_vlan_tpid : ETH_P_8021Q);
          const std::uint16_t tag[2] = {htons(tpid),
                                        htons(static_cast<std::uint16_t>(h->hv1.tp_vlan_tci))};
          if (h->tp_mac >= kHeaderEnd + kVlanTag) {
            std::memmove(data - kVlanTag, data, 2 * ETH_ALEN);
            data -= kVlanTag;
          } else {
            auto& copy = scratch_[k];
            copy.assign(data, data + len);
            copy.insert(copy.begin() + 2 * ETH_ALEN, kVlanTag, 0);
            data = copy.data();
          }
          std::memcpy(data + 2 * ETH_ALEN, tag, sizeof tag);
          len += kVlanTag;
          wire += kVlanTag;
        }
        const std::span<const std::uint8_t> frame(data, len);
        parsed_[k] = filters::parse_packet(frame);
        filters::Block& b = out[k];
        b = filters::Block{};
        b.data = frame;
        b.ts_ns = std::uint64_t{h->tp_sec} * 1'000'000'000u + h->tp_nsec;
        b.wire_len = wire;
        b.kind = filters::BlockKind::packet;
        b.parsed = &parsed_[k];
        ++counts_.packets;
        counts_.bytes += wire;
        ++k;
      }
    }
    if (left_ == 0) {
      // Its frames stay valid until the next poll(): hand it back then.
      done_.push_back(current_);
      open_ = false;
      current_ = (current_ + 1) % options_.block_count;
    }
  }
  return k;
}

bool PacketSocketSource::wait(int timeout_ms) {
  if (next_ready()) return true;
  pollfd p{fd_, POLLIN | POLLERR, 0};
  const int r = ::poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR)
    throw std::system_error(errno, std::generic_category(), "rx on " + options_.dev + ": poll");
  return next_ready();
}

PacketSocketSource::Stats PacketSocketSource::counters() const {
  tpacket_stats_v3 k{};
  socklen_t len = sizeof k;
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &k, &len) == 0) {
    drops_ += k.tp_drops;
    freeze_ += k.tp_freeze_q_cnt;
  }
  Stats s = counts_;
  s.drops = drops_;
  s.freeze_q_cnt = freeze_;
  return s;
}

filters::FilterStats PacketSocketSource::stats() const {
  const Stats s = counters();
  return {{"packets", s.packets},
          {"bytes", s.bytes},
          {"drops", s.drops},
          {"freeze_q_cnt", s.freeze_q_cnt},
          {"outgoing", s.outgoing}};
}

}  // namespace srl::runtime
