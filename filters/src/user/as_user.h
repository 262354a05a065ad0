// Opening paths as another user, one thread at a time.
//
// A filter with a file owner (UserFilterConfig::file_owner) opens, creates
// and removes its paths with that user's filesystem identity, so that the
// kernel checks the permissions as that user and what is created belongs to
// them. Linux keeps the filesystem uid and gid and the supplementary groups
// per thread, but glibc's setgroups (like its setuid family) applies to
// every thread of the process: the raw system calls are used, so that only
// the calling thread switches and the others (engine workers, a daemon's
// own threads) keep running as themselves.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "srl/filters/user.h"

namespace srl::filters::user {

class AsUser {
 public:
  // Switches the calling thread to `owner`; none: changes nothing. Never
  // throws: ok() says whether the switch took, and a switch that did not
  // take is undone at once.
  explicit AsUser(const std::optional<FileOwner>& owner) noexcept;
  // Back to the thread's identity from before; keeps errno.
  ~AsUser();
  AsUser(const AsUser&) = delete;
  AsUser& operator=(const AsUser&) = delete;

  bool ok() const { return error_ == 0; }
  int error() const { return error_; }  // errno of a switch that failed

 private:
  void restore() noexcept;

  int error_ = 0;
  bool groups_switched_ = false;
  bool fsgid_switched_ = false;
  bool fsuid_switched_ = false;
  uid_t saved_fsuid_ = 0;
  gid_t saved_fsgid_ = 0;
  std::vector<gid_t> saved_groups_;
};

// Every path the filters open, create or remove goes through the functions
// below. Each takes on `owner`'s identity for the call (as AsUser) and, when
// owner->beneath is not empty, keeps the path inside those directories: the
// path, made absolute and lexically normalised (".." taken away with the
// component before it), must lie inside one of them; that directory is
// opened, and the rest is resolved from it by openat2(2) with
// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, so that a symbolic link leading
// out (absolute, or with ".." above the directory), also one planted after
// any check, is refused by the kernel at the open itself. Without an owner,
// or with no directories, the path is used as given.
//
// On failure they return -1 (or false) with errno set and `error` saying
// why, worded to follow "cannot <do what> 'PATH' as uid N: ".

// The mode of files created for `owner`: FileOwner::create_mode; 0644
// without an owner.
mode_t create_mode_of(const std::optional<FileOwner>& owner);

// open(2) of `path` with `flags` (O_CLOEXEC added); O_CREAT creates with
// create_mode_of(owner). Returns the new descriptor.
int open_as(const std::optional<FileOwner>& owner, const std::string& path, int flags,
            std::string& error);

// mkdir -p: creates the directory `path` and the missing ones above it (with
// create_mode_of(owner) plus search permission where it grants reading, so
// 0644 makes 0755 and 0600 makes 0700), each created beneath an allowed
// directory. Returns an O_PATH descriptor of the directory.
int make_directories_as(const std::optional<FileOwner>& owner, const std::string& path,
                        std::string& error);

// mkfifo(3) of `path` with `mode`; an existing entry (a symbolic link
// included) is EEXIST.
bool make_fifo_as(const std::optional<FileOwner>& owner, const std::string& path, mode_t mode,
                  std::string& error);

// unlink(2) of `path` (a symbolic link itself, not its target).
bool unlink_as(const std::optional<FileOwner>& owner, const std::string& path, std::string& error);

// " as uid N", for messages about a path; empty without an owner.
std::string owner_text(const std::optional<FileOwner>& owner);

// While building a filter: a switch that did not take is a configuration
// error naming `path` and the user.
void require_switched(const AsUser& as, const UserFilterConfig& config, const std::string& path);

}  // namespace srl::filters::user
