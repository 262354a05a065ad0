// Opens the daemon-commands module (daemon_module.h) on first use.
#include "daemon_module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <stdexcept>

namespace srl::cli {

namespace {

// The directory of the running srl binary.
std::filesystem::path exe_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::filesystem::path(std::string(buf, static_cast<std::size_t>(n))).parent_path();
}

const DaemonModule& open_module() {
  const auto dir = exe_dir();
  // The build tree keeps it next to srl; an installation in LIBDIR/srl.
  const std::filesystem::path candidates[] = {
      dir / kDaemonModuleFile,
      dir / ".." / SRL_INSTALL_LIBDIR / "srl" / kDaemonModuleFile,
  };
  std::string tried;
  for (const auto& path : candidates) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      tried += "\n  " + path.lexically_normal().string() + ": not there";
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      tried += "\n  " + path.lexically_normal().string() + ": " + dlerror();
      continue;
    }
    using Entry = const DaemonModule* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(handle, kDaemonModuleSymbol));
    const DaemonModule* m = entry != nullptr ? entry() : nullptr;
    if (m == nullptr || m->version != kDaemonModuleVersion || m->add_commands == nullptr ||
        m->plan == nullptr || m->spaces == nullptr || m->finish == nullptr) {
      tried +=
          "\n  " + path.lexically_normal().string() + ": not this version of srl's daemon commands";
      dlclose(handle);
      continue;
    }
    return *m;  // stays open: its commands run from the CLI's parser
  }
  throw std::runtime_error(std::string("cannot load the daemon commands (") + kDaemonModuleFile +
                           "), looked for:" + tried);
}

}  // namespace

const DaemonModule* opened = nullptr;

const DaemonModule& daemon_module() {
  // Opened once; a failed attempt throws and the next call tries again.
  static const DaemonModule& module = open_module();
  opened = &module;
  return module;
}

void finish_daemon_module() {
  if (opened != nullptr) opened->finish();
}

}  // namespace srl::cli
