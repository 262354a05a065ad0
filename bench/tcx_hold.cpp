// Holds a hand-written TC program on a device's tcx ingress hook for
// capture_side_by_side.sh (-B): the least a per-packet hook costs, beside
// srl's program and tcpdump's tap.
//
//   tcx_hold FILE.c PROGRAM DEV [CACHE]
//
// Compiles FILE.c (srl's compile_bpf: clang, cached), loads it, attaches
// PROGRAM through a tcx link (srl's own tcx_ingress_link), prints
// "attached" on stderr, and on SIGINT or SIGTERM prints `counted=N` (the sum
// over CPUs of the first per-CPU map's entry 0) on stdout and exits; the
// link goes with the process. Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "srl/runtime/kernel.h"

namespace {
volatile std::sig_atomic_t stop = 0;
void on_signal(int) {
  stop = 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: tcx_hold FILE.c PROGRAM DEV [CACHE]\n");
    return 2;
  }
  const unsigned ifindex = if_nametoindex(argv[3]);
  if (ifindex == 0) {
    std::fprintf(stderr, "tcx_hold: no device '%s'\n", argv[3]);
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    std::fprintf(stderr, "tcx_hold: cannot read %s\n", argv[1]);
    return 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    const auto cache = argc > 4 ? std::filesystem::path(argv[4])
                                : std::filesystem::temp_directory_path() / "srl-tcx-hold-cache";
    const auto object = srl::runtime::kernel::compile_bpf(text.str(), cache);
    bpf_object* obj = bpf_object__open_file(object.c_str(), nullptr);
    if (obj == nullptr || bpf_object__load(obj) != 0) {
      std::fprintf(stderr, "tcx_hold: cannot load %s\n", object.c_str());
      return 1;
    }
    bpf_program* prog = bpf_object__find_program_by_name(obj, argv[2]);
    if (prog == nullptr) {
      std::fprintf(stderr, "tcx_hold: no program '%s'\n", argv[2]);
      return 1;
    }
    const int link =
        srl::runtime::kernel::tcx_ingress_link(bpf_program__fd(prog), static_cast<int>(ifindex));
    if (link < 0) {
      std::fprintf(stderr, "tcx_hold: cannot attach a tcx link to %s\n", argv[3]);
      return 1;
    }
    std::fprintf(stderr, "attached\n");
    while (stop == 0)
      pause();
    std::uint64_t total = 0;
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, obj) {
      if (bpf_map__type(map) != BPF_MAP_TYPE_PERCPU_ARRAY) continue;
      std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(libbpf_num_possible_cpus()));
      const std::uint32_t zero = 0;
      if (bpf_map_lookup_elem(bpf_map__fd(map), &zero, per_cpu.data()) == 0)
        for (auto v : per_cpu)
          total += v;
      break;
    }
    std::printf("counted=%llu\n", static_cast<unsigned long long>(total));
    close(link);
    bpf_object__close(obj);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tcx_hold: %s\n", e.what());
    return 1;
  }
  return 0;
}
