// Userspace filter implementations: the interface the userspace engine
// (runtime/engine.h) drives, and the registry that builds them from a node of
// a Request DAG.
//
// Life cycle, as in Click: an element is built once from its typed options
// (the registry checks them and throws std::invalid_argument with the filter
// and option named), then gets blocks one at a time through process(), time
// through tick(), and the end of input through finish(). A filter says what
// to do with a block through the Emitter: nothing (reject), accept(cls) (the
// block goes on to the children whose edge selects cls), or, for transforms
// such as tcpstream, emit() of new blocks.
//
// Blocks are Ethernet frames (packets) or chunks of a reassembled byte stream
// (streams). Protocol filters take both: on a packet they look at the L4
// payload, on a stream at the stream's bytes.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "srl/filters/catalog.h"
#include "srl/filters/packet.h"
#include "srl/filters/reference.h"

namespace srl::filters {

enum class BlockKind : std::uint8_t { packet, stream };

// One TCP connection as tcpstream sees it. The client is the side that sent
// the first segment seen (the SYN when it was seen).
struct FlowInfo {
  std::uint64_t id = 0;  // 1, 2, 3, ... in order of first segment; never reused
  L3Kind family = L3Kind::none;
  std::array<std::uint8_t, 16> client_addr{};  // IPv4: first 4 bytes
  std::array<std::uint8_t, 16> server_addr{};
  std::uint16_t client_port = 0;
  std::uint16_t server_port = 0;
};

struct Block {
  // packet: the frame as captured; stream: a chunk of one direction's bytes.
  std::span<const std::uint8_t> data;
  std::uint64_t ts_ns = 0;     // capture time, ns since the Unix epoch
  std::uint32_t wire_len = 0;  // packet: length on the wire (>= data.size())
  BlockKind kind = BlockKind::packet;
  // packet: its headers, parsed once: by whoever made the block, or by the
  // engine before the first filter that reads headers (reads_headers()).
  // Null only where no filter on the block's way has needed them.
  const ParsedPacket* parsed = nullptr;
  // stream only: the connection, the direction (0: client to server), where
  // data[0] lies in that direction's byte stream, and whether this chunk ends
  // the direction (FIN, RST, idle timeout, eviction or end of input).
  const FlowInfo* flow = nullptr;
  std::uint8_t direction = 0;
  std::uint64_t stream_offset = 0;
  bool stream_end = false;

  // Its length on the wire: what byte counters and pcap records count (a
  // stream chunk, or a block whose maker set no wire_len: its data).
  std::uint64_t wire() const { return wire_len > data.size() ? wire_len : data.size(); }
};

// Bytes a packet carries above its L4 header (TCP after the data offset, UDP
// after its 8 bytes, ICMP after 8), trimmed to the IP datagram's length (no
// Ethernet padding); empty for non-first fragments, non-IP frames and
// truncated headers. A stream block's payload is its data.
std::span<const std::uint8_t> l4_payload(const ParsedPacket& packet,
                                         std::span<const std::uint8_t> frame);
std::span<const std::uint8_t> payload_of(const Block& block);
// A packet's parsed headers: its own, or parsed into `scratch` when whoever
// made the block left them out.
const ParsedPacket& headers_of(const Block& block, ParsedPacket& scratch);

// Where a filter puts its decision and its new blocks.
class Emitter {
 public:
  virtual ~Emitter() = default;
  // The input block goes on with class `cls`. At most once per process().
  virtual void accept(std::uint16_t cls) = 0;
  // A new block with class `cls`. Its data (and flow/parsed pointers) must
  // stay valid until the engine's batch is done: use allocate() for bytes
  // the filter does not keep itself for that long.
  virtual void emit(const Block& block, std::uint16_t cls) = 0;
  // Scratch memory that lives until the current batch has left the engine.
  virtual std::span<std::uint8_t> allocate(std::size_t bytes) = 0;
  // The class the block came with: the one the filter before this one gave
  // it on the edge it came by (0 after `!>` and from a source).
  virtual std::uint16_t input_class() const { return 0; }
};

// What a `count, by=class` counted of one class of its input; kOtherClasses
// stands for the classes beyond its keys.
inline constexpr std::uint32_t kOtherClasses = 65536;
struct ClassTally {
  std::uint32_t cls = 0;
  std::uint64_t blocks = 0, bytes = 0;
};

// Named counters a filter reports besides blocks/bytes (which the engine
// counts): e.g. tcpstream's "flows", "out_of_order", "dropped_bytes".
using FilterStats = std::vector<std::pair<std::string, std::uint64_t>>;

class UserFilter {
 public:
  UserFilter() = default;
  virtual ~UserFilter() = default;
  UserFilter(const UserFilter&) = delete;
  UserFilter& operator=(const UserFilter&) = delete;

  virtual void process(const Block& block, Emitter& out) = 0;
  // Whether process() looks at a packet's headers. A filter that only
  // stores or forwards the bytes (pcap, fifo, tx) says no, so that a copy
  // that goes straight to it is never parsed; block.parsed may then be null.
  virtual bool reads_headers() const { return true; }
  // How often, while blocks come, this filter needs tick(): 0 (the engine's
  // flush interval, 10 ms by default), or longer. The engine ticks at the
  // shortest period its filters need (at most a second); a filter that
  // buffers output for seconds anyway (pcap) says so, and an engine that
  // runs only such filters wakes seldom.
  virtual std::uint64_t tick_every_ns() const { return 0; }
  // The clock moved to `now_ns` (ns since the Unix epoch, the time base of
  // Block::ts_ns): expire idle state, flush buffers. Called every flush
  // interval of the engine while blocks arrive, and at least every idle tick
  // interval (100 ms by default) while none do.
  virtual void tick(std::uint64_t now_ns, Emitter& out) {
    (void)now_ns;
    (void)out;
  }
  // End of input: emit what is still held (open streams end with
  // stream_end), flush and close files.
  virtual void finish(Emitter& out) { (void)out; }
  virtual FilterStats stats() const { return {}; }
  // Why the filter lost what it was given to keep, with the path and the
  // reason ("writing 'cap.pcap': No space left on device"); empty while it
  // has lost nothing. The first such failure: `srl run` reports it and ends
  // non-zero, the daemon shows it with the node.
  virtual std::string failure() const { return {}; }
  // A count by class: whether it is one, and its tallies by class
  // (kOtherClasses last).
  virtual bool counts_by_class() const { return false; }
  virtual std::vector<ClassTally> class_tallies() const { return {}; }
};

// A source of blocks: pcapin here; rx and the AF_XDP channel in runtime/.
class UserSource {
 public:
  UserSource() = default;
  virtual ~UserSource() = default;
  UserSource(const UserSource&) = delete;
  UserSource& operator=(const UserSource&) = delete;

  // Up to out.size() blocks whose time has come at `now_ns` (replay speed);
  // their data and parsed headers stay valid until the next poll(). Returns
  // 0 when nothing is due now (see next_due_ns) or at the end.
  virtual std::size_t poll(std::span<Block> out, std::uint64_t now_ns) = 0;
  // No block will ever come again.
  virtual bool done() const = 0;
  // When the next block is due (so the caller can sleep), if known.
  virtual std::uint64_t next_due_ns() const { return 0; }
  virtual FilterStats stats() const { return {}; }
};

// A user as the filesystem sees them: whose permissions apply and who owns
// what is created.
struct FileOwner {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
  // Non-empty: every path this user's filters open or create must resolve
  // inside one of these directories, and the kernel enforces it at each open
  // (openat2 with RESOLVE_BENEATH). A check of the paths before the filters
  // start cannot: a symbolic link that dangles then, or is planted or changed
  // afterwards, would lead elsewhere at the open. Empty: paths resolve as
  // they are, limited only by the user's permissions.
  std::vector<std::filesystem::path> beneath;
  // The mode of files the filters create (the umask still applies), and of
  // directories, with search added where reading is allowed. Captures hold
  // traffic that may not be this user's to share: a daemon passes 0600.
  mode_t create_mode = 0644;
};

// What the registry needs to build one node's implementation.
struct UserFilterConfig {
  const FilterSpec* spec = nullptr;
  std::map<std::string, OptionValue> options;  // as the DAG stores them
  const ClassicBpf* cbpf = nullptr;            // `bpf`: the compiler's program
  std::string node_id;                         // for messages: "n3"
  // Files this filter creates or reads are opened with the permissions of
  // this user, only beneath its directories when it has any, and belong to
  // them; none: the process's own.
  std::optional<FileOwner> file_owner;
};

// Throws std::invalid_argument naming the node, the filter and what is wrong
// (missing or ill-typed option, unreadable file, bad pattern), or when the
// filter has no userspace implementation.
std::unique_ptr<UserFilter> make_user_filter(const UserFilterConfig& config);
std::unique_ptr<UserSource> make_user_source(const UserFilterConfig& config);  // pcapin
bool has_user_filter(std::string_view filter_name);                            // filters and sinks
bool has_user_source(std::string_view filter_name);

// Reads an option as written, else the catalog's default; nullopt when
// neither. Throws std::invalid_argument when it has another type.
std::optional<std::int64_t> int_option(const UserFilterConfig& config, std::string_view name);
std::optional<std::string> string_option(const UserFilterConfig& config, std::string_view name);
std::optional<bool> bool_option(const UserFilterConfig& config, std::string_view name);
// "node n3 (pcap): WHAT", for errors.
[[noreturn]] void config_error(const UserFilterConfig& config, const std::string& what);

}  // namespace srl::filters
