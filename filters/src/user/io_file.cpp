// file: every stream direction to a file of its own, and packets to one
// pcap file per conversation.
//
// Streams: DIR/flow-<id>-<client addr>.<port>-<server addr>.<port>.<c2s|s2c>
// (addresses as inet_ntop writes them). Each chunk is written with pwrite()
// at its stream offset, so chunks may come in any order and a gap in the
// stream stays a hole (zeros) in the file. A file is created when the first
// byte of its direction comes and closed at the chunk that ends the
// direction.
//
// Packets: both directions of a conversation go to one nanosecond pcap file,
// DIR/packets-<tcp|udp>-<a>.<port>-<b>.<port>.pcap, with the endpoints in
// ascending (address, port) order; IP packets without ports (ICMP, other
// protocols, fragments after the first) to DIR/packets-<proto>-<a>-<b>.pcap
// with proto icmp, icmp6 or ip-proto-N; ARP to DIR/packets-arp.pcap, other
// ethertypes to DIR/packets-ethertype-<hex>.pcap and frames too short for
// Ethernet to DIR/packets-other.pcap.
//
// Files from an earlier run with the same name are replaced. At most
// `max_open` files are open at once: the least recently used is closed and
// reopened when needed (pwrite for streams, O_APPEND for pcap files).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <list>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "as_user.h"
#include "factories.h"
#include "io.h"

namespace srl::filters::user {
namespace {

constexpr std::size_t kDefaultMaxOpen = 256;
constexpr std::size_t kPcapFlushAt = 16 * 1024;
constexpr std::uint32_t kSnaplen = kMaxSnaplen;

template <typename T>
void append_raw(std::string& key, const T& value) {
  key.append(reinterpret_cast<const char*>(&value), sizeof value);
}

class FileSink final : public UserFilter {
 public:
  FileSink(std::filesystem::path dir, std::optional<FileOwner> owner, std::size_t max_open)
      : dir_(std::move(dir)),
        owner_(std::move(owner)),
        max_open_(std::max<std::size_t>(max_open, 1)) {}

  ~FileSink() override { close_all(); }

  void process(const Block& block, Emitter&) override {
    if (block.kind == BlockKind::stream)
      write_stream(block);
    else
      write_packet(block);
  }

  void tick(std::uint64_t, Emitter&) override {
    for (auto& [key, file] : open_)
      flush(file);
  }

  void finish(Emitter&) override { close_all(); }

  FilterStats stats() const override {
    FilterStats s{{"files", files_}, {"bytes", bytes_}};
    if (errors_ != 0) s.emplace_back("errors", errors_);
    // Blocks a failed open or write lost: the node's `lost`.
    if (dropped_ != 0) s.emplace_back("dropped_unwritten", dropped_);
    return s;
  }

  std::string failure() const override { return failure_; }

 private:
  struct OpenFile {
    int fd = -1;
    std::string path;
    std::vector<std::uint8_t> pending;  // pcap files: records not yet written
    std::uint64_t records = 0;          // in pending
    std::list<std::string>::iterator lru;
  };

  // The first failure, said with the path and the reason (failure()).
  void failed(const char* doing, const std::string& path, const std::string& why) {
    ++errors_;
    if (failure_.empty()) failure_ = std::string(doing) + " '" + path + "': " + why;
  }

  void write_stream(const Block& b) {
    if (b.flow == nullptr) {
      ++errors_;
      return;
    }
    std::string key = "s";
    append_raw(key, b.flow->id);
    key += static_cast<char>(b.direction != 0);
    if (!b.data.empty()) {
      OpenFile* f = file_for(
          key, [&] { return stream_name(b); }, false);
      if (f == nullptr) ++dropped_;
      if (f != nullptr) {
        std::size_t done = 0;
        while (done < b.data.size()) {
          const ssize_t n = ::pwrite(f->fd, b.data.data() + done, b.data.size() - done,
                                     static_cast<off_t>(b.stream_offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            failed("writing", f->path, n < 0 ? std::strerror(errno) : "nothing written");
            ++dropped_;
            break;
          }
          done += static_cast<std::size_t>(n);
        }
        bytes_ += done;
      }
    }
    if (b.stream_end) {
      if (auto it = open_.find(key); it != open_.end()) close_file(it);
      evicted_.erase(key);
    }
  }

  void write_packet(const Block& b) {
    const ParsedPacket p = b.parsed ? *b.parsed : parse_packet(b.data, b.wire_len);
    std::string key = "p";
    if (p.is_ip()) {
      // Both directions of a conversation under one key: endpoints ordered.
      const std::size_t n = p.addr_len();
      const int order = std::memcmp(p.saddr.data(), p.daddr.data(), n);
      const bool swap = order > 0 || (order == 0 && p.sport > p.dport);
      const bool ports = p.has_ports();
      key += static_cast<char>(p.l3);
      key += static_cast<char>(p.l4_proto);
      key += static_cast<char>(ports);
      const auto& a = swap ? p.daddr : p.saddr;
      const auto& z = swap ? p.saddr : p.daddr;
      const std::uint16_t pa = ports ? (swap ? p.dport : p.sport) : 0;
      const std::uint16_t pz = ports ? (swap ? p.sport : p.dport) : 0;
      key.append(reinterpret_cast<const char*>(a.data()), n);
      key.append(reinterpret_cast<const char*>(z.data()), n);
      append_raw(key, pa);
      append_raw(key, pz);
      OpenFile* f = file_for(
          key,
          [&] {
            std::string name = "packets-" + proto_text(p.l4_proto) + "-" + address_text(p.l3, a);
            if (ports) name += "." + std::to_string(pa);
            name += "-" + address_text(p.l3, z);
            if (ports) name += "." + std::to_string(pz);
            return name + ".pcap";
          },
          true);
      if (f != nullptr)
        add_record(*f, b);
      else
        ++dropped_;
      return;
    }
    const std::uint16_t type = p.eth ? p.ethertype : 0;
    key += static_cast<char>(p.eth);
    append_raw(key, type);
    OpenFile* f = file_for(
        key,
        [&] {
          if (!p.eth) return std::string("packets-other.pcap");
          if (type == 0x0806) return std::string("packets-arp.pcap");
          char hex[8];
          std::snprintf(hex, sizeof hex, "%04x", unsigned{type});
          return "packets-ethertype-" + std::string(hex) + ".pcap";
        },
        true);
    if (f != nullptr)
      add_record(*f, b);
    else
      ++dropped_;
  }

  void add_record(OpenFile& f, const Block& b) {
    bytes_ += append_pcap_record(f.pending, b, kSnaplen);
    ++f.records;
    if (f.pending.size() >= kPcapFlushAt) flush(f);
  }

  std::string stream_name(const Block& b) const {
    const FlowInfo& fl = *b.flow;
    return "flow-" + std::to_string(fl.id) + "-" + address_text(fl.family, fl.client_addr) + "." +
           std::to_string(fl.client_port) + "-" + address_text(fl.family, fl.server_addr) + "." +
           std::to_string(fl.server_port) + (b.direction == 0 ? ".c2s" : ".s2c");
  }

  // The open file for `key`, opening (and, the first time, creating) it
  // under the name `name()` gives; null when it cannot be opened.
  template <typename Name>
  OpenFile* file_for(const std::string& key, Name&& name, bool pcap) {
    if (auto it = open_.find(key); it != open_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return &it->second;
    }
    if (open_.size() >= max_open_) {
      auto victim = open_.find(lru_.back());
      if (victim != open_.end()) {
        evicted_.insert(victim->first);
        close_file(victim);
      }
    }
    const bool reopen = evicted_.erase(key) != 0;
    const std::string path = (dir_ / name()).string();
    int flags = O_WRONLY | O_CREAT;
    flags |= reopen ? (pcap ? O_APPEND : 0) : O_TRUNC;
    // Files are created while running, from whichever thread runs the sink:
    // the switch of identity is per thread, so it is taken per open. The
    // path is resolved again each time, beneath the owner's directories.
    std::string error;
    const int fd = open_as(owner_, path, flags, error);
    if (fd < 0) {
      failed("opening", path, error);
      if (reopen) evicted_.insert(key);
      return nullptr;
    }
    if (!reopen) ++files_;
    lru_.push_front(key);
    OpenFile& f = open_[key];
    f.fd = fd;
    f.path = path;
    f.lru = lru_.begin();
    if (pcap && !reopen) append_pcap_header(f.pending, kSnaplen);
    return &f;
  }

  void flush(OpenFile& f) {
    std::size_t done = 0;
    while (done < f.pending.size()) {
      const ssize_t n = ::write(f.fd, f.pending.data() + done, f.pending.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failed("writing", f.path, n < 0 ? std::strerror(errno) : "nothing written");
        dropped_ += f.records;  // what was buffered is lost
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    f.pending.clear();
    f.records = 0;
  }

  void close_file(std::unordered_map<std::string, OpenFile>::iterator it) {
    flush(it->second);
    ::close(it->second.fd);
    lru_.erase(it->second.lru);
    open_.erase(it);
  }

  void close_all() {
    while (!open_.empty())
      close_file(open_.begin());
  }

  std::filesystem::path dir_;
  std::optional<FileOwner> owner_;
  std::size_t max_open_;
  std::unordered_map<std::string, OpenFile> open_;
  std::list<std::string> lru_;  // most recently used first
  // Files closed to stay under max_open that will be reopened, not
  // replaced: streams not yet ended and every pcap file.
  std::unordered_set<std::string> evicted_;
  std::uint64_t files_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t errors_ = 0;
  std::uint64_t dropped_ = 0;
  std::string failure_;
};

}  // namespace

std::unique_ptr<UserFilter> make_file_sink(const UserFilterConfig& config, std::size_t max_open) {
  const std::string dir = string_option(config, "dir").value_or(".");
  if (dir.empty()) config_error(config, "option 'dir' must not be empty");
  const std::string as_text = owner_text(config.file_owner);
  std::string error;
  const int dir_fd = make_directories_as(config.file_owner, dir, error);
  if (dir_fd < 0)
    config_error(config, "cannot create directory '" + dir + "'" + as_text + ": " + error);
  int err = 0;
  {
    // Without an owner as access() (the real user), with one as the
    // filesystem user: AT_EACCESS checks with the thread's current ids.
    AsUser as(config.file_owner);
    if (!as.ok())
      err = as.error();
    else if (::faccessat(dir_fd, ".", W_OK | X_OK, config.file_owner ? AT_EACCESS : 0) != 0)
      err = errno;
  }
  ::close(dir_fd);
  if (err != 0)
    config_error(config,
                 "cannot write to directory '" + dir + "'" + as_text + ": " + std::strerror(err));
  return std::make_unique<FileSink>(dir, config.file_owner, max_open);
}

std::unique_ptr<UserFilter> make_file_sink(const UserFilterConfig& config) {
  return make_file_sink(config, kDefaultMaxOpen);
}

}  // namespace srl::filters::user
