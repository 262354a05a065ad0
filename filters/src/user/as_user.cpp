#include "as_user.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <utility>

namespace srl::filters::user {
namespace {

// Where the plain calls take 16-bit ids (32-bit x86 and ARM), the *32 ones
// take full ids.
#ifdef SYS_setgroups32
constexpr long kSetGroups = SYS_setgroups32;
#else
constexpr long kSetGroups = SYS_setgroups;
#endif
#ifdef SYS_setfsuid32
constexpr long kSetFsuid = SYS_setfsuid32;
constexpr long kSetFsgid = SYS_setfsgid32;
#else
constexpr long kSetFsuid = SYS_setfsuid;
constexpr long kSetFsgid = SYS_setfsgid;
#endif

// setfsuid and setfsgid return the previous id and report no error; an
// invalid id (-1) changes nothing, so it reads the current one.
uid_t set_fsuid(uid_t uid) {
  return static_cast<uid_t>(::syscall(kSetFsuid, uid));
}
gid_t set_fsgid(gid_t gid) {
  return static_cast<gid_t>(::syscall(kSetFsgid, gid));
}
uid_t current_fsuid() {
  return set_fsuid(static_cast<uid_t>(-1));
}
gid_t current_fsgid() {
  return set_fsgid(static_cast<gid_t>(-1));
}

int set_groups(const std::vector<gid_t>& groups) {
  return ::syscall(kSetGroups, groups.size(), groups.data()) == 0 ? 0 : errno;
}

// The calling thread's supplementary groups (getgroups reads the thread's
// own credentials); errno on failure.
int thread_groups(std::vector<gid_t>& out) {
  for (;;) {
    const int n = ::getgroups(0, nullptr);
    if (n < 0) return errno;
    out.resize(static_cast<std::size_t>(n));
    const int got = ::getgroups(n, out.data());
    if (got >= 0) {
      out.resize(static_cast<std::size_t>(got));
      return 0;
    }
    if (errno != EINVAL) return errno;  // EINVAL: the list grew meanwhile
  }
}

}  // namespace

AsUser::AsUser(const std::optional<FileOwner>& owner) noexcept {
  if (!owner) return;
  const int saved_errno = errno;
  try {
    error_ = thread_groups(saved_groups_);
  } catch (const std::bad_alloc&) {
    error_ = ENOMEM;
  }
  if (error_ == 0) error_ = set_groups(owner->groups);
  if (error_ == 0) {
    groups_switched_ = true;
    saved_fsgid_ = set_fsgid(owner->gid);
    fsgid_switched_ = true;
    if (current_fsgid() != owner->gid) error_ = EPERM;
  }
  if (error_ == 0) {
    saved_fsuid_ = set_fsuid(owner->uid);
    fsuid_switched_ = true;
    if (current_fsuid() != owner->uid) error_ = EPERM;
  }
  if (error_ != 0) restore();
  errno = saved_errno;
}

AsUser::~AsUser() {
  restore();
}

void AsUser::restore() noexcept {
  if (!groups_switched_ && !fsgid_switched_ && !fsuid_switched_) return;
  const int saved_errno = errno;
  bool failed = false;
  // In the reverse order of the switch; each is checked, since setfsuid and
  // setfsgid do not report failure.
  if (fsuid_switched_) {
    set_fsuid(saved_fsuid_);
    failed |= current_fsuid() != saved_fsuid_;
  }
  if (fsgid_switched_) {
    set_fsgid(saved_fsgid_);
    failed |= current_fsgid() != saved_fsgid_;
  }
  if (groups_switched_) failed |= set_groups(saved_groups_) != 0;
  groups_switched_ = fsgid_switched_ = fsuid_switched_ = false;
  if (failed) {
    // A thread left with another user's identity would go on to open files
    // as that user without anyone noticing.
    std::fputs("srl: cannot restore a thread's filesystem identity\n", stderr);
    std::abort();
  }
  errno = saved_errno;
}

namespace {

namespace fs = std::filesystem;

// A descriptor closed at scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ < 0) return;
    const int saved_errno = errno;
    ::close(fd_);
    errno = saved_errno;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    Fd old(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Sets `error` and errno; returns -1.
int fail(std::string& error, std::string text, int err) {
  error = std::move(text);
  errno = err;
  return -1;
}
int fail(std::string& error, int err) {
  return fail(error, std::strerror(err), err);
}
// The same, for the functions that return false.
bool failed(std::string& error, std::string text, int err) {
  fail(error, std::move(text), err);
  return false;
}
bool failed(std::string& error, int err) {
  fail(error, err);
  return false;
}

bool beneath_applies(const std::optional<FileOwner>& owner) {
  return owner && !owner->beneath.empty();
}

// Read permission brings search permission with it: 0644 -> 0755.
mode_t directory_mode(mode_t file_mode) {
  return file_mode | ((file_mode & 0444) >> 2);
}

// `p` made absolute (from the working directory) and lexically normal; no
// ".." is left in an absolute normal path. Empty when the working directory
// cannot be read (errno set).
fs::path absolute_normal(const fs::path& p) {
  if (p.is_absolute()) return p.lexically_normal();
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (ec) {
    errno = ec.value();
    return {};
  }
  return (cwd / p).lexically_normal();
}

// The names below "/" of an absolute normal path.
std::vector<std::string> components_of(const fs::path& normal) {
  std::vector<std::string> out;
  for (const fs::path& part : normal.relative_path()) {
    std::string name = part.string();
    if (!name.empty() && name != ".") out.push_back(std::move(name));
  }
  return out;
}

std::string directories_text(const FileOwner& owner) {
  std::string out;
  for (const fs::path& dir : owner.beneath) {
    if (!out.empty()) out += ", ";
    out += dir.string();
  }
  return out;
}

std::string outside_text(const FileOwner& owner) {
  return "it lies outside the directories this user may use (" + directories_text(owner) +
         "); expected a path inside one of them";
}

// Words a failure of openat2 beneath the owner's directories.
int beneath_failure(const FileOwner& owner, std::string& error, int err) {
  if (err == EXDEV)
    return fail(error,
                "a symbolic link on it leads outside the directories this user may use (" +
                    directories_text(owner) + "); expected a path that stays inside one of them",
                err);
  if (err == ENOSYS)
    return fail(error,
                "the kernel cannot keep it inside the directories this user may use (openat2: " +
                    std::string(std::strerror(err)) + ")",
                err);
  return fail(error, err);
}

// openat2(2) of `rest` below `dirfd`, never resolving outside it: ".." above
// it, an absolute symbolic link or one leading out give EXDEV, a "magic"
// link of /proc ELOOP.
int open_beneath(int dirfd, const std::string& rest, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(static_cast<unsigned>(flags | O_CLOEXEC));
  // openat2 refuses a mode where nothing is created.
  if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, dirfd, rest.c_str(), &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    // EAGAIN: a rename or mount elsewhere in the system raced the lookup,
    // which the kernel then refuses to trust; looking up again is safe.
    if (errno == EINTR || (errno == EAGAIN && attempt < 16)) continue;
    return -1;
  }
}

// A path placed beneath one of the owner's directories: that directory,
// opened, and the names below it.
struct Beneath {
  Fd dir;
  std::vector<std::string> names;
  bool trailing_slash = false;

  // names[from, to) joined by "/"; "." for none.
  std::string join(std::size_t from, std::size_t to) const {
    std::string out;
    for (std::size_t i = from; i < to; ++i) {
      if (!out.empty()) out += '/';
      out += names[i];
    }
    return out.empty() ? std::string(".") : out;
  }
  // The whole path below the directory.
  std::string rest() const {
    std::string out = join(0, names.size());
    if (trailing_slash && !names.empty()) out += '/';
    return out;
  }
  // The directory that holds the last name, opened beneath; the allowed
  // directory itself is not opened again (see parent_fd).
  Fd open_parent() const {
    if (names.size() <= 1) return Fd();
    return Fd(open_beneath(dir.get(), join(0, names.size() - 1), O_PATH | O_DIRECTORY, 0));
  }
  int parent_fd(const Fd& parent) const { return names.size() <= 1 ? dir.get() : parent.get(); }
};

// Places `path` beneath the outermost of the owner's directories that
// lexically holds it and opens that directory. Runs as the owner.
bool place_beneath(const FileOwner& owner, const std::string& path, Beneath& out,
                   std::string& error) {
  if (path.empty()) return failed(error, ENOENT);
  const fs::path target = absolute_normal(path);
  if (target.empty()) return failed(error, errno);
  const std::vector<std::string> target_names = components_of(target);
  const fs::path* best = nullptr;
  std::size_t best_depth = 0;
  for (const fs::path& dir : owner.beneath) {
    if (dir.empty()) continue;
    const fs::path normal = absolute_normal(dir);
    if (normal.empty()) continue;
    const std::vector<std::string> names = components_of(normal);
    if (names.size() > target_names.size() ||
        !std::equal(names.begin(), names.end(), target_names.begin()))
      continue;
    // The outermost: whatever lies below it is allowed, also through a
    // symbolic link into a sibling of a nested allowed directory.
    if (best == nullptr || names.size() < best_depth) {
      best = &dir;
      best_depth = names.size();
    }
  }
  if (best == nullptr) return failed(error, outside_text(owner), EXDEV);
  const fs::path dir = absolute_normal(*best);
  out.dir.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (out.dir.get() < 0) {
    const int err = errno;
    return failed(
        error,
        "cannot open the directory it lies in, '" + best->string() + "': " + std::strerror(err),
        err);
  }
  out.names.assign(target_names.begin() + static_cast<std::ptrdiff_t>(best_depth),
                   target_names.end());
  out.trailing_slash = !target.has_filename();
  return true;
}

std::string identity_text(int err) {
  return "cannot take on that user's identity: " + std::string(std::strerror(err));
}

// Whether `name` below `dirfd` is a directory itself (not a link to one).
bool is_directory_at(int dirfd, const char* name) {
  struct stat st {};
  return ::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

mode_t create_mode_of(const std::optional<FileOwner>& owner) {
  return owner ? owner->create_mode : mode_t{0644};
}

int open_as(const std::optional<FileOwner>& owner, const std::string& path, int flags,
            std::string& error) {
  AsUser as(owner);
  if (!as.ok()) return fail(error, identity_text(as.error()), as.error());
  const mode_t mode = create_mode_of(owner);
  if (!beneath_applies(owner)) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    return fd >= 0 ? fd : fail(error, errno);
  }
  Beneath at;
  if (!place_beneath(*owner, path, at, error)) return -1;
  const int fd = open_beneath(at.dir.get(), at.rest(), flags, mode);
  return fd >= 0 ? fd : beneath_failure(*owner, error, errno);
}

int make_directories_as(const std::optional<FileOwner>& owner, const std::string& path,
                        std::string& error) {
  AsUser as(owner);
  if (!as.ok()) return fail(error, identity_text(as.error()), as.error());
  const mode_t mode = directory_mode(create_mode_of(owner));
  if (!beneath_applies(owner)) {
    if (path.empty()) return fail(error, ENOENT);
    fs::path prefix;
    for (const fs::path& part : fs::path(path)) {
      prefix /= part;
      if (part.empty()) continue;  // after a trailing "/"
      // EEXIST comes before a missing write permission or a read-only
      // filesystem; other errors for a directory that is there anyway are
      // no failure either.
      if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
        const int err = errno;
        struct stat st {};
        if (::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return fail(error, err);
      }
    }
    const int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd >= 0 ? fd : fail(error, errno);
  }
  Beneath at;
  if (!place_beneath(*owner, path, at, error)) return -1;
  for (std::size_t i = 0; i < at.names.size(); ++i) {
    // Each level is created in its parent as opened beneath the allowed
    // directory; mkdirat does not follow a symbolic link in the last name.
    const Fd parent(i == 0 ? -1
                           : open_beneath(at.dir.get(), at.join(0, i), O_PATH | O_DIRECTORY, 0));
    if (i != 0 && parent.get() < 0) return beneath_failure(*owner, error, errno);
    const int parent_fd = i == 0 ? at.dir.get() : parent.get();
    const char* name = at.names[i].c_str();
    if (::mkdirat(parent_fd, name, mode) != 0 && errno != EEXIST) {
      const int err = errno;
      if (!is_directory_at(parent_fd, name)) return fail(error, err);
    }
  }
  const int fd = open_beneath(at.dir.get(), at.rest(), O_PATH | O_DIRECTORY, 0);
  return fd >= 0 ? fd : beneath_failure(*owner, error, errno);
}

// Runs `call(parent_fd, last_name)` (a *at(2) call, 0 or -1 with errno) in
// the directory that holds `path`, opened beneath the owner's directories;
// `self_errno` when `path` is an allowed directory itself.
template <typename Call>
bool at_parent_beneath(const FileOwner& owner, const std::string& path, int self_errno,
                       std::string& error, Call call) {
  Beneath at;
  if (!place_beneath(owner, path, at, error)) return false;
  if (at.names.empty()) return failed(error, self_errno);
  const Fd parent = at.open_parent();
  const int parent_fd = at.parent_fd(parent);
  if (parent_fd < 0) {
    beneath_failure(owner, error, errno);
    return false;
  }
  const std::string name = at.names.back() + (at.trailing_slash ? "/" : "");
  return call(parent_fd, name.c_str()) == 0 || failed(error, errno);
}

bool make_fifo_as(const std::optional<FileOwner>& owner, const std::string& path, mode_t mode,
                  std::string& error) {
  AsUser as(owner);
  if (!as.ok()) return failed(error, identity_text(as.error()), as.error());
  if (!beneath_applies(owner)) return ::mkfifo(path.c_str(), mode) == 0 || failed(error, errno);
  return at_parent_beneath(*owner, path, EEXIST, error, [&](int parent_fd, const char* name) {
    return ::mknodat(parent_fd, name, S_IFIFO | (mode & 07777), 0);
  });
}

bool unlink_as(const std::optional<FileOwner>& owner, const std::string& path, std::string& error) {
  AsUser as(owner);
  if (!as.ok()) return failed(error, identity_text(as.error()), as.error());
  if (!beneath_applies(owner)) return ::unlink(path.c_str()) == 0 || failed(error, errno);
  return at_parent_beneath(*owner, path, EISDIR, error, [](int parent_fd, const char* name) {
    return ::unlinkat(parent_fd, name, 0);
  });
}

std::string owner_text(const std::optional<FileOwner>& owner) {
  return owner ? " as uid " + std::to_string(owner->uid) : std::string();
}

void require_switched(const AsUser& as, const UserFilterConfig& config, const std::string& path) {
  if (!as.ok())
    config_error(config, "cannot use '" + path + "'" + owner_text(config.file_owner) +
                             ": cannot take on that user's identity: " + std::strerror(as.error()));
}

}  // namespace srl::filters::user
