// Cost profile: costs measured on a machine by `srl calibrate`, which plans
// use in place of the catalog's and discovery's defaults. JSON schema:
// docs/optimizer.md §Profile.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "srl/filters/catalog.h"
#include "srl/optimizer/system_model.h"

namespace srl::optimizer {

struct ChannelCost {
  double ns_per_block = 0;
  double ns_per_byte = 0;
};

struct Profile {
  std::string host;     // hostname it was measured on
  std::string kernel;   // kernel release
  std::string created;  // UTC, ISO 8601
  // Raw figures, by name (docs/optimizer.md lists them), e.g. "memcpy_ns_per_byte".
  std::map<std::string, double> measurements;
  std::optional<double> memory_bandwidth_bytes_per_s;
  std::map<ChannelKind, ChannelCost> channels;
  // filter name -> implementation kind -> cost
  std::map<std::string, std::map<filters::SpaceKind, filters::Cost>> filters;
  // driver -> hook ("tc", "xdp-native", "xdp-generic") -> what the hook
  // costs each received block (Space::hook_ns_per_block); JSON "hooks".
  std::map<std::string, std::map<std::string, filters::Cost>> hooks;

  // The profile's cost of a filter in a kind of space, else nullptr.
  const filters::Cost* filter_cost(std::string_view filter, filters::SpaceKind k) const;
};

inline constexpr int kProfileJsonVersion = 1;

nlohmann::ordered_json to_json(const Profile& p);
Profile profile_from_json(const nlohmann::json& j);  // throws std::runtime_error
Profile load_profile(const std::filesystem::path& file);
void save_profile(const Profile& p, const std::filesystem::path& file);
// The time now, UTC, ISO 8601 ("2026-11-25T12:00:00Z"): how profiles and
// the daemon's journal stamp what they record.
std::string now_utc();

// $SRL_PROFILE, else $XDG_CONFIG_HOME/srl/profile.json, else ~/.config/srl/profile.json.
std::filesystem::path default_profile_path();
// The profile at default_profile_path(), if there is one there (throws
// std::runtime_error for one that cannot be read).
std::optional<Profile> load_default_profile();

// Replaces the model's channel costs by the profile's measured ones (by
// channel kind) and its copy bandwidth, and gives every kernel space its
// hook's measured cost (by driver). An xdp space whose mode the caller did
// not fix takes the cheaper of the modes the profile measured for its
// driver (generic XDP on a veth: ~130 ns per frame against ~220 native),
// with a note; its AF_XDP channels then copy.
void apply(const Profile& p, SystemModel& m);

struct CalibrateOptions {
  double seconds_per_test = 0.3;  // time spent on each measurement
  bool bpf = true;                // BPF_PROG_TEST_RUN (needs CAP_BPF)
  const filters::Catalog* catalog = nullptr;
};

// Measures what exists on this machine (docs/optimizer.md §Calibration);
// `log` receives one line per measurement.
Profile calibrate(const CalibrateOptions& options,
                  const std::function<void(const std::string&)>& log = {});

}  // namespace srl::optimizer
