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

// " as uid N", for messages about a path; empty without an owner.
std::string owner_text(const std::optional<FileOwner>& owner);

// While building a filter: a switch that did not take is a configuration
// error naming `path` and the user.
void require_switched(const AsUser& as, const UserFilterConfig& config, const std::string& path);

}  // namespace srl::filters::user
