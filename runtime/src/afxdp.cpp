// AF_XDP receive channel: UMEM, fill/completion rings and the RX ring of
// one socket, bound with libxdp but registered in srl's own XSKMAP.
#include "srl/runtime/afxdp.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/if_xdp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "srl/runtime/kernel.h"

namespace srl::runtime {

struct AfxdpChannel::Rings {
  xsk_ring_prod fill{};
  xsk_ring_cons comp{};
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
};

namespace {

constexpr std::uint64_t kFrameSize = XSK_UMEM__DEFAULT_FRAME_SIZE;
constexpr std::uint32_t kMaxFrames = 1u << 20;  // 4 GiB of UMEM
constexpr std::uint32_t kTxRing = 2048;

std::uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

std::optional<std::uint32_t> parse_afxdp_tag(std::span<const std::uint8_t> frame) {
  kernel::AfxdpTag tag{};
  if (frame.size() < sizeof tag) return std::nullopt;
  std::memcpy(&tag, frame.data(), sizeof tag);
  // The magic is in network byte order: compare the bytes as they lie.
  if (frame[0] != (kernel::kAfxdpTagMagic >> 8) || frame[1] != (kernel::kAfxdpTagMagic & 0xFF))
    return std::nullopt;
  if (tag.version != 1 || tag.length != sizeof tag || tag.exits == 0) return std::nullopt;
  return tag.exits;
}

std::unique_ptr<AfxdpChannel> AfxdpChannel::open(const AfxdpOptions& options, int xsks_map_fd) {
  if (options.dev.empty()) throw std::invalid_argument("afxdp: no device given");
  if (options.frames < 2 || options.frames > kMaxFrames)
    throw std::invalid_argument("afxdp on " + options.dev + ": frames must be in 2.." +
                                std::to_string(kMaxFrames));
  if (xsks_map_fd < 0) throw std::invalid_argument("afxdp on " + options.dev + ": no XSKMAP");

  std::unique_ptr<AfxdpChannel> ch(new AfxdpChannel());
  ch->options_ = options;
  ch->rings_ = std::make_unique<Rings>();
  const std::string where = "afxdp on " + options.dev + " queue " + std::to_string(options.queue);
  auto fail = [&](int err, const std::string& step) {
    throw std::system_error(err < 0 ? -err : err, std::generic_category(), where + ": " + step);
  };

  ch->map_fd_ = fcntl(xsks_map_fd, F_DUPFD_CLOEXEC, 0);
  if (ch->map_fd_ < 0) fail(errno, "cannot duplicate the XSKMAP fd");

  ch->area_size_ = options.frames * kFrameSize;
  void* area =
      mmap(nullptr, ch->area_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) fail(errno, "cannot map the UMEM");
  ch->area_ = area;

  // The fill ring holds every frame at once, so it can always be kept full;
  // the completion ring every frame that could be in flight for TX.
  const std::uint32_t ring = std::bit_ceil(options.frames);
  xsk_umem_config ucfg{};
  ucfg.fill_size = ring;
  ucfg.comp_size = std::min(ring, kTxRing);
  ucfg.frame_size = static_cast<std::uint32_t>(kFrameSize);
  ucfg.frame_headroom = XSK_UMEM__DEFAULT_FRAME_HEADROOM;
  ucfg.flags = XSK_UMEM__DEFAULT_FLAGS;
  if (const int rc = xsk_umem__create(&ch->umem_, ch->area_, ch->area_size_, &ch->rings_->fill,
                                      &ch->rings_->comp, &ucfg);
      rc != 0) {
    ch->umem_ = nullptr;
    fail(rc, "cannot register the UMEM");
  }

  ch->bind_socket();

  if (const int rc = xsk_socket__update_xskmap(ch->xsk_, ch->map_fd_); rc != 0)
    fail(rc, "cannot insert the socket into the XSKMAP");
  ch->in_map_ = true;

  ch->free_.reserve(options.frames);
  ch->held_.reserve(options.frames);
  // Highest address last out, so the first frames used are the low ones.
  for (std::uint32_t i = options.frames; i-- > 0;)
    ch->free_.push_back(i * kFrameSize);
  ch->recycle();
  return ch;
}

void AfxdpChannel::bind_socket() {
  const std::uint32_t ring = std::bit_ceil(options_.frames);
  xsk_socket_config cfg{};
  cfg.rx_size = ring;
  cfg.tx_size = std::min(ring, kTxRing);
  cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // srl's program redirects
  cfg.xdp_flags = 0;

  std::vector<std::uint16_t> modes;
  if (options_.try_zero_copy) modes.push_back(XDP_ZEROCOPY);
  modes.push_back(XDP_COPY);
  int rc = 0;
  for (const std::uint16_t mode : modes) {
    cfg.bind_flags =
        static_cast<std::uint16_t>(mode | (options_.need_wakeup ? XDP_USE_NEED_WAKEUP : 0));
    // A socket closed just before on this queue releases it asynchronously.
    rc = -EBUSY;
    for (int attempt = 0; attempt < 40 && rc == -EBUSY; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      rc = xsk_socket__create(&xsk_, options_.dev.c_str(), options_.queue, umem_, &rings_->rx,
                              &rings_->tx, &cfg);
    }
    if (rc == 0) {
      zero_copy_ = mode == XDP_ZEROCOPY;
      return;
    }
    xsk_ = nullptr;
  }
  const std::string where = "afxdp on " + options_.dev + " queue " + std::to_string(options_.queue);
  throw std::system_error(rc < 0 ? -rc : rc, std::generic_category(),
                          where + ": cannot create and bind the AF_XDP socket");
}

AfxdpChannel::~AfxdpChannel() {
  if (in_map_) {
    // The kernel would drop the entry when the socket is released; doing
    // it first means no frame is redirected to a socket being torn down.
    std::uint32_t key = options_.queue;
    bpf_map_delete_elem(map_fd_, &key);
  }
  if (xsk_ != nullptr) xsk_socket__delete(xsk_);
  if (umem_ != nullptr) xsk_umem__delete(umem_);
  if (area_ != nullptr) munmap(area_, area_size_);
  if (map_fd_ >= 0) ::close(map_fd_);
}

int AfxdpChannel::fd() const {
  return xsk_socket__fd(xsk_);
}

void AfxdpChannel::wake_if_needed() {
  if (options_.need_wakeup && xsk_ring_prod__needs_wakeup(&rings_->fill) != 0)
    recvfrom(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
}

// Frames handed out last time go back to the fill ring.
void AfxdpChannel::recycle() {
  free_.insert(free_.end(), held_.begin(), held_.end());
  held_.clear();
  refill();
}

// Frames whose transmission completed, and every frame we hold unused, go
// to the fill ring, so the kernel never lacks a frame we could give it.
void AfxdpChannel::refill() {
  std::uint32_t idx = 0;
  const std::uint32_t done = xsk_ring_cons__peek(&rings_->comp, rings_->comp.size, &idx);
  for (std::uint32_t i = 0; i < done; ++i)
    free_.push_back(*xsk_ring_cons__comp_addr(&rings_->comp, idx + i));
  if (done > 0) xsk_ring_cons__release(&rings_->comp, done);

  if (free_.empty()) return;
  const auto room = static_cast<std::uint32_t>(std::min<std::size_t>(
      free_.size(), xsk_prod_nb_free(&rings_->fill, static_cast<std::uint32_t>(free_.size()))));
  if (room == 0) return;
  if (xsk_ring_prod__reserve(&rings_->fill, room, &idx) != room) return;
  for (std::uint32_t i = 0; i < room; ++i) {
    *xsk_ring_prod__fill_addr(&rings_->fill, idx + i) = free_.back();
    free_.pop_back();
  }
  xsk_ring_prod__submit(&rings_->fill, room);
  wake_if_needed();
}

std::size_t AfxdpChannel::take(std::span<filters::Block> out, std::span<std::uint32_t> exits) {
  std::size_t k = 0;
  std::uint64_t now = 0;
  bool bad = false;
  while (k < out.size()) {
    std::uint32_t idx = 0;
    const std::uint32_t got =
        xsk_ring_cons__peek(&rings_->rx, static_cast<std::uint32_t>(out.size() - k), &idx);
    if (got == 0) break;
    if (now == 0) now = realtime_ns();
    for (std::uint32_t i = 0; i < got; ++i) {
      const xdp_desc* d = xsk_ring_cons__rx_desc(&rings_->rx, idx + i);
      // Aligned mode: the descriptor may point past the start of its frame.
      const std::uint64_t base = d->addr - d->addr % kFrameSize;
      const std::span<const std::uint8_t> frame(
          static_cast<const std::uint8_t*>(xsk_umem__get_data(area_, d->addr)), d->len);
      const auto mask = parse_afxdp_tag(frame);
      if (!mask) {
        ++counts_.bad_tag;
        free_.push_back(base);
        bad = true;
        continue;
      }
      const auto data = frame.subspan(sizeof(kernel::AfxdpTag));
      parsed_[k] = filters::parse_packet(data);
      filters::Block& b = out[k];
      b = filters::Block{};
      b.data = data;
      b.ts_ns = now;
      b.wire_len = static_cast<std::uint32_t>(data.size());
      b.kind = filters::BlockKind::packet;
      b.parsed = &parsed_[k];
      exits[k] = *mask;
      held_.push_back(base);
      ++counts_.received;
      counts_.bytes += data.size();
      ++k;
    }
    xsk_ring_cons__release(&rings_->rx, got);
  }
  if (bad) refill();
  return k;
}

std::size_t AfxdpChannel::receive(std::span<filters::Block> out, std::span<std::uint32_t> exits,
                                  int timeout_ms) {
  recycle();
  const std::size_t want = std::min(out.size(), exits.size());
  if (want == 0) return 0;
  if (parsed_.size() < want) parsed_.resize(want);
  out = out.first(want);
  exits = exits.first(want);

  std::size_t n = take(out, exits);
  if (n > 0) return n;
  if (timeout_ms == 0) {
    wake_if_needed();
    return 0;
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int wait = -1;
    if (timeout_ms > 0) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return 0;
      wait = static_cast<int>(left);
    }
    // poll() also wakes the driver up when the fill ring asks for it.
    pollfd p{fd(), POLLIN, 0};
    if (::poll(&p, 1, wait) < 0 && errno != EINTR)
      throw std::system_error(errno, std::generic_category(),
                              "afxdp on " + options_.dev + ": poll");
    n = take(out, exits);
    if (n > 0) return n;
  }
}

AfxdpChannel::Stats AfxdpChannel::stats() const {
  Stats s = counts_;
  xdp_statistics k{};
  socklen_t len = sizeof k;
  if (getsockopt(fd(), SOL_XDP, XDP_STATISTICS, &k, &len) == 0) {
    s.rx_dropped = k.rx_dropped;
    s.rx_invalid_descs = k.rx_invalid_descs;
    s.rx_ring_full = k.rx_ring_full;
    s.rx_fill_ring_empty_descs = k.rx_fill_ring_empty_descs;
  }
  return s;
}

}  // namespace srl::runtime
