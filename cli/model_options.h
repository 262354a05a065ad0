// Options shared by the commands that need a system model and a cost
// profile (plan, spaces; run takes the profile's): discover this machine or load a model file, and
// use the calibrated profile when there is one.
#pragma once

#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "srl/control/pipeline.h"
#include "srl/optimizer/discovery.h"
#include "srl/optimizer/profile.h"

namespace srl::cli {

// The cost profile a plan is made with: every command that plans (plan, run)
// uses the same one, so that `srl plan` shows what `srl run` deploys.
struct ProfileOptions {
  std::string profile_file;
  bool no_profile = false;

  void add(CLI::App& cmd) {
    cmd.add_option("--profile", profile_file,
                   "cost profile from `srl calibrate` (default: " +
                       optimizer::default_profile_path().string() + " if it exists)");
    cmd.add_flag("--no-profile", no_profile, "use the catalog's default costs");
  }

  // Throws control::PipelineError (input) when the named profile cannot be read.
  control::CostProfile cost() const { return control::cost_profile(!no_profile, profile_file); }
};

struct ModelOptions : ProfileOptions {
  std::vector<std::string> devices;
  std::string model_file;
  std::uint32_t max_cpus = 0;

  void add(CLI::App& cmd, bool with_dev = true) {
    if (with_dev)
      cmd.add_option("--dev", devices,
                     "device to model (repeatable); default: every Ethernet device that is up")
          ->allow_extra_args(false);
    cmd.add_option("--model", model_file,
                   "plan for the machine described in this system model JSON (see `srl spaces "
                   "--save`) instead of discovering this one");
    ProfileOptions::add(cmd);
    cmd.add_option("--cpus", max_cpus, "model at most this many CPUs as user spaces (0: all)");
  }

  optimizer::SystemModel model() const {
    if (!model_file.empty()) return optimizer::load_model(model_file);
    optimizer::DiscoveryOptions d;
    d.devices = devices;
    d.max_user_cpus = max_cpus;
    return optimizer::discover(d);
  }
};

}  // namespace srl::cli
