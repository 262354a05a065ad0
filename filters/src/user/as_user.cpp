#include "as_user.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

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

std::string owner_text(const std::optional<FileOwner>& owner) {
  return owner ? " as uid " + std::to_string(owner->uid) : std::string();
}

void require_switched(const AsUser& as, const UserFilterConfig& config, const std::string& path) {
  if (!as.ok())
    config_error(config, "cannot use '" + path + "'" + owner_text(config.file_owner) +
                             ": cannot take on that user's identity: " + std::strerror(as.error()));
}

}  // namespace srl::filters::user
