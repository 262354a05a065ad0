// srl calibrate: measures costs on this machine (copies, channels, eBPF) and
// stores them as the profile that plans use.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "srl/optimizer/profile.h"
#include "srl/runtime/calibrate.h"
#include "srl/runtime/calibrate_user.h"

namespace srl::cli {

void add_calibrate_command(CLI::App& app, int& result) {
  struct Opts {
    std::string output;
    double seconds = 0.3;
    bool json = false, no_bpf = false, no_filters = false, dry = false;
    std::string cache = "/var/cache/srl/bpf";
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("calibrate", "measure costs on this machine and store a profile");
  cmd->footer("The profile is written to " + optimizer::default_profile_path().string() +
              " unless -o says otherwise ($SRL_PROFILE moves the default).\n"
              "What is measured: docs/optimizer.md, section Calibration.");
  cmd->add_option("-o,--output", o->output, "profile file to write");
  cmd->add_option("--seconds", o->seconds, "time per measurement (default 0.3)")
      ->check(CLI::Range(0.01, 60.0));
  cmd->add_flag("--no-bpf", o->no_bpf, "skip the BPF_PROG_TEST_RUN measurements");
  cmd->add_flag("--no-filters", o->no_filters,
                "skip measuring each kernel filter in a generated XDP program");
  cmd->add_option("--cache", o->cache, "directory for compiled programs");
  cmd->add_flag("-n,--dry-run", o->dry, "measure and print, write nothing");
  cmd->add_flag("-j,--json", o->json, "print the profile as JSON");
  cmd->callback([o, &result] {
    try {
      optimizer::CalibrateOptions c;
      c.seconds_per_test = o->seconds;
      c.bpf = !o->no_bpf;
      auto log = [&](const std::string& line) {
        (o->json ? std::cerr : std::cout) << line << "\n";
      };
      auto p = optimizer::calibrate(c, log);
      if (!o->no_bpf && !o->no_filters) {
        // Each kernel filter in the program the kernel space really
        // generates, against the same program without it.
        runtime::kernel::FilterCalibration fc;
        fc.cache = o->cache;
        fc.repeat = static_cast<std::uint32_t>(std::max(10'000.0, o->seconds * 1e6));
        for (const auto& [name, ns] : runtime::kernel::calibrate_filters(fc, log))
          p.filters[name][filters::SpaceKind::kernel] = filters::Cost{ns, 0};
      }
      if (!o->no_bpf) {
        // The copy channel up from the kernel, both ends, at two sizes.
        runtime::kernel::FilterCalibration fc;
        fc.cache = o->cache;
        fc.repeat = static_cast<std::uint32_t>(std::max(30'000.0, o->seconds * 1e5));
        const auto small = runtime::kernel::calibrate_copy_channel(fc, 64);
        const auto large = runtime::kernel::calibrate_copy_channel(fc, 1500);
        const double per_byte = std::max(0.0, (large.total() - small.total()) / (1500 - 64));
        const double per_block = std::max(0.1, small.total() - 64 * per_byte);
        p.channels[optimizer::ChannelKind::ringbuf] = {per_block, per_byte};
        p.measurements["ringbuf_64B_kernel_ns"] = small.kernel_ns;
        p.measurements["ringbuf_64B_reader_ns"] = small.reader_ns;
        p.measurements["ringbuf_1500B_kernel_ns"] = large.kernel_ns;
        p.measurements["ringbuf_1500B_reader_ns"] = large.reader_ns;
        char line[200];
        std::snprintf(line, sizeof line,
                      "copy ring: %.1f ns/block + %.3f ns/B (64 B: %.1f kernel + %.1f reader, "
                      "1500 B: %.1f + %.1f)",
                      per_block, per_byte, small.kernel_ns, small.reader_ns, large.kernel_ns,
                      large.reader_ns);
        log(line);
        // The hooks themselves, on a veth pair of the calibration's own.
        runtime::kernel::HookCalibration hc;
        hc.frames = static_cast<std::size_t>(std::max(20'000.0, o->seconds * 3e5));
        try {
          for (const auto& [hook, cost] : runtime::kernel::calibrate_veth_hooks(hc, log)) {
            // "packet" is rx in userspace (an AF_PACKET socket): a filter cost.
            if (hook == "packet")
              p.filters["rx"][filters::SpaceKind::user] = {cost.ns_per_block, cost.ns_per_byte};
            else
              p.hooks["veth"][hook] = filters::Cost{cost.ns_per_block, cost.ns_per_byte};
            p.measurements["veth_" + hook + "_64B_ns"] = cost.ns_64;
            p.measurements["veth_" + hook + "_1500B_ns"] = cost.ns_1500;
          }
        } catch (const std::exception& e) {
          log(std::string("veth hooks not measured: ") + e.what());
        }
      }
      if (!o->no_filters) {
        // Each userspace filter in the engine, against the engine alone.
        runtime::UserCalibration uc;
        uc.blocks = static_cast<std::size_t>(std::max(20'000.0, o->seconds * 2e5));
        for (const auto& [name, cost] : runtime::calibrate_user_filters(uc, log))
          p.filters[name][filters::SpaceKind::user] =
              filters::Cost{cost.ns_per_block, cost.ns_per_byte};
      }
      if (o->json) std::cout << optimizer::to_json(p).dump(2) << "\n";
      if (!o->dry) {
        const auto path = o->output.empty() ? optimizer::default_profile_path()
                                            : std::filesystem::path(o->output);
        optimizer::save_profile(p, path);
        (o->json ? std::cerr : std::cout) << "profile written to " << path.string() << "\n";
      }
      result = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "srl calibrate: " << e.what() << "\n";
      result = kExitFailure;
    }
  });
}

}  // namespace srl::cli
