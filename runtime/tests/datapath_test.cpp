// Datapath on a real device (a veth pair in a namespace of the test's own):
// the steps of a transaction in their order (also across an XDP hook, a TC
// hook, an AF_PACKET socket and the engine), a failure at every step undone
// in reverse with nothing left attached, the make-before-break swap and its
// inverse, and hooks that outlive their process (release, adopt). Needs root.
#include <doctest/doctest.h>
#include <sys/mount.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "srl/compiler/compiler.h"
#include "srl/runtime/datapath.h"
#include "srl/runtime/inputs.h"
#include "test_namespace.h"

using namespace srl;
using srl::testing::attached_program;
using srl::testing::TestNamespace;

namespace {

namespace fs = std::filesystem;

// Records every step announced; throws before the step numbered `fail_at`
// (1-based; 0: never).
struct RecordingObserver : runtime::StepObserver {
  std::size_t fail_at = 0;
  std::vector<std::string> before_keys, taken_keys, undone_keys;
  void before(const runtime::Step& s) override {
    before_keys.push_back(s.key);
    if (before_keys.size() == fail_at) throw std::runtime_error("refused by the test");
  }
  void taken(const runtime::Step& s) override { taken_keys.push_back(s.key); }
  void undone(const runtime::Step& s) override { undone_keys.push_back(s.key); }
};

struct Compiled {
  compiler::CompileResult result;
  runtime::Placement placement;
};

Compiled compile_on_hb(const std::string& text) {
  compiler::CompileOptions o;
  o.default_devices = {"hb"};
  Compiled c{compiler::compile(text, o), {}};
  REQUIRE(c.result.ok());
  c.placement = runtime::fixed_placement(*c.result.dag, {"hb"}, {});
  return c;
}

runtime::DatapathOptions options() {
  runtime::DatapathOptions o;
  o.cache = fs::temp_directory_path() / "srl-kernel-test-cache";
  return o;
}

}  // namespace

TEST_CASE("datapath: instantiate, connect, then activate from the outputs back") {
  TestNamespace ns;
  const int hb = ns.ifindex("hb");
  // dns has no kernel implementation: the kernel copies blocks up through
  // its copy ring (nothing consumes them in userspace).
  const auto c = compile_on_hb("(udp) > (port) 53> (dns) > (count)");
  RecordingObserver rec;
  auto dp = runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec);
  std::vector<std::string> expected = {"compile:hb",   "load:hb",      "engine",
                                       "ringbuf:hb:0", "start:engine", "attach:hb"};
  CHECK(rec.taken_keys == expected);
  CHECK(rec.undone_keys.empty());
  CHECK(attached_program(hb) != 0);
  CHECK(dp->afxdp_devices().empty());  // copies hold no AF_XDP queue
  CHECK(dp->has_engine());
  const auto counters = dp->counters();
  REQUIRE(counters.size() == 5);
  CHECK(counters[2].space == "xdp:hb");  // port
  CHECK(counters[3].space == "user");    // dns
  REQUIRE(dp->channels().size() == 1);
  CHECK(dp->channels().front().name == "ringbuf:hb:0");

  // Removal: the inputs first (the hook), then the engine.
  RecordingObserver out;
  dp->remove(&out);
  CHECK(out.taken_keys == std::vector<std::string>{"detach:hb", "stop:engine"});
  CHECK(attached_program(hb) == 0);
  dp->remove(&out);  // idempotent
  CHECK(out.taken_keys.size() == 2);
}

TEST_CASE("datapath: the channels up deploy as the placement has them, or nothing does") {
  TestNamespace ns;
  const int hb = ns.ifindex("hb");
  // port (n2) in XDP hands its blocks up to dns (n3): a copy over the ring.
  auto c = compile_on_hb("(udp) > (port) 53> (dns) > (count)");
  const runtime::UpChannel copy{.from = 2, .to = 3};
  auto refused = [&](std::vector<runtime::UpChannel> up, const std::string& why) {
    CAPTURE(why);
    c.placement.up = std::move(up);
    RecordingObserver rec;
    CHECK_THROWS_WITH_AS(runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec),
                         doctest::Contains(why.c_str()), std::invalid_argument);
    CHECK(rec.before_keys.empty());  // refused before any step
    CHECK(attached_program(hb) == 0);
  };
  auto take = copy;
  take.delivery = filters::Delivery::take;
  take.kind = runtime::UpChannelKind::afxdp;
  refused({take},
          "the plan has n2 (port) > n3 (dns) take its blocks over afxdp; on hb's xdp hook "
          "it would copy them over ringbuf");
  auto other = copy;
  other.from = 1;
  refused({other}, "the plan has no channel up for n2 (port) > n3 (dns)");
  refused({copy, other}, "that hb's program does not leave by");
  c.placement.up = {copy};
  auto dp = runtime::Datapath::build(*c.result.dag, c.placement, options());
  CHECK(attached_program(hb) != 0);
  dp->remove();
}

TEST_CASE("datapath: a failure at any step undoes the steps taken, in reverse") {
  TestNamespace ns;
  const int hb = ns.ifindex("hb");
  const auto c = compile_on_hb("(udp) > (port) 53> (dns) > (count)");
  std::size_t steps = 0;
  {
    RecordingObserver rec;
    auto dp = runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec);
    steps = rec.taken_keys.size();
  }
  REQUIRE(steps >= 5);
  for (std::size_t n = 1; n <= steps; ++n) {
    CAPTURE(n);
    RecordingObserver rec;
    rec.fail_at = n;
    try {
      runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec);
      FAIL("the build did not fail");
    } catch (const runtime::StepError& e) {
      CHECK(e.step().key == rec.before_keys.back());
      CHECK(e.reason() == "refused by the test");
      CHECK(std::string(e.what()).find("step '" + e.step().key + "'") != std::string::npos);
    }
    CHECK(rec.taken_keys.size() == n - 1);
    const std::vector<std::string> reversed(rec.taken_keys.rbegin(), rec.taken_keys.rend());
    CHECK(rec.undone_keys == reversed);
    CHECK(attached_program(hb) == 0);
  }
}

TEST_CASE("datapath: an observer that cannot record undoing (a full journal) does not stop it") {
  // Every record after the failing step throws too, as a journal on a full
  // disk would: the rollback, run from a destructor, must still undo every
  // step and end in the StepError, not in std::terminate.
  struct FullJournal : RecordingObserver {
    void taken(const runtime::Step& s) override {
      RecordingObserver::taken(s);
      if (taken_keys.size() == 3) throw std::runtime_error("database or disk is full");
    }
    void undone(const runtime::Step& s) override {
      RecordingObserver::undone(s);
      throw std::runtime_error("database or disk is full");
    }
  };
  TestNamespace ns;
  const int hb = ns.ifindex("hb");
  const auto c = compile_on_hb("(udp) > (port) 53> (dns) > (count)");
  for (std::size_t fail_at : {std::size_t{0}, std::size_t{2}, std::size_t{5}}) {
    CAPTURE(fail_at);
    FullJournal rec;
    rec.fail_at = fail_at;
    CHECK_THROWS(runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec));
    // Whatever was taken was undone, each in reverse, with every record refused.
    const std::vector<std::string> reversed(rec.taken_keys.rbegin(), rec.taken_keys.rend());
    CHECK(rec.undone_keys == reversed);
    CHECK(attached_program(hb) == 0);
  }
  // Removal rolls forward whatever its observer says.
  RecordingObserver ok;
  auto dp = runtime::Datapath::build(*c.result.dag, c.placement, options(), &ok);
  REQUIRE(attached_program(hb) != 0);
  FullJournal full;
  dp->remove(&full);
  CHECK(attached_program(hb) == 0);
  CHECK(full.taken_keys == std::vector<std::string>{"detach:hb", "stop:engine"});
}

TEST_CASE("datapath: a new datapath swaps its program into the running hook") {
  TestNamespace ns;
  const int hb = ns.ifindex("hb");
  const auto first = compile_on_hb("(udp) > (count)");
  const auto second = compile_on_hb("(tcp) > (count)");
  auto old = runtime::Datapath::build(*first.result.dag, first.placement, options());
  const auto old_program = attached_program(hb);
  REQUIRE(old_program != 0);

  // A failure at the swap leaves the old program running, in the old hook.
  RecordingObserver failing;
  failing.fail_at = 3;  // compile, load, swap
  CHECK_THROWS_AS(runtime::Datapath::build(*second.result.dag, second.placement, options(),
                                           &failing, old.get()),
                  runtime::StepError);
  CHECK(failing.before_keys.back() == "swap:hb");
  CHECK(attached_program(hb) == old_program);
  CHECK(old->hooked_devices() == std::vector<std::string>{"hb"});

  RecordingObserver rec;
  auto fresh =
      runtime::Datapath::build(*second.result.dag, second.placement, options(), &rec, old.get());
  CHECK(rec.taken_keys == std::vector<std::string>{"compile:hb", "load:hb", "swap:hb"});
  const auto new_program = attached_program(hb);
  CHECK(new_program != old_program);
  CHECK(fresh->hooked_devices() == std::vector<std::string>{"hb"});
  CHECK(old->hooked_devices().empty());
  CHECK(old->counters().size() == 3);  // the program it ran stays readable
  old.reset();                         // holds no hook any more: nothing is detached
  CHECK(attached_program(hb) == new_program);
  fresh.reset();
  CHECK(attached_program(hb) == 0);
}

TEST_CASE("datapath: released hooks outlive it; adopted ones are swapped or removed") {
  TestNamespace ns;
  const int hb = ns.ifindex("hb");
  const auto bpffs =
      fs::temp_directory_path() / ("srl-datapath-test-bpffs-" + std::to_string(getpid()));
  runtime::kernel::ensure_bpffs(bpffs);
  auto o = options();
  o.pin_root = bpffs / "srl";
  const auto first = compile_on_hb("(udp) > (count)");
  const auto second = compile_on_hb("(tcp) > (count)");
  {
    auto dp = runtime::Datapath::build(*first.result.dag, first.placement, o);
    CHECK(dp->release());
  }
  const auto running = attached_program(hb);
  CHECK(running != 0);  // still attached, pinned
  CHECK(runtime::kernel::XdpHook::pinned_at(o.pin_root / "hb"));

  std::vector<std::string> problems;
  auto adopted = runtime::Datapath::adopt(o.pin_root, &problems);
  CHECK(problems.empty());
  CHECK(adopted->hooked_devices() == std::vector<std::string>{"hb"});
  RecordingObserver rec;
  auto fresh =
      runtime::Datapath::build(*second.result.dag, second.placement, o, &rec, adopted.get());
  CHECK(rec.taken_keys.back() == "swap:hb");
  CHECK(attached_program(hb) != running);
  adopted.reset();
  CHECK(attached_program(hb) != 0);
  fresh.reset();
  CHECK(attached_program(hb) == 0);
  CHECK_FALSE(fs::exists(o.pin_root / "hb"));

  // An adopted hook nobody takes is detached with its pins.
  {
    auto dp = runtime::Datapath::build(*first.result.dag, first.placement, o);
    dp->release();
  }
  REQUIRE(attached_program(hb) != 0);
  runtime::Datapath::adopt(o.pin_root).reset();
  CHECK(attached_program(hb) == 0);
  CHECK_FALSE(fs::exists(o.pin_root / "hb"));
  umount2(bpffs.c_str(), MNT_DETACH);
  fs::remove_all(bpffs);
}

// Builds `c`, expecting the steps `expected`, then fails it at every step:
// each failure undoes the steps taken, in reverse, and leaves no hook.
void build_and_fail_at_every_step(const Compiled& c, const std::vector<std::string>& expected,
                                  const std::vector<int>& ifindexes) {
  {
    RecordingObserver rec;
    auto dp = runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec);
    CHECK(rec.taken_keys == expected);
  }
  for (std::size_t n = 1; n <= expected.size(); ++n) {
    CAPTURE(n);
    RecordingObserver rec;
    rec.fail_at = n;
    CHECK_THROWS_AS(runtime::Datapath::build(*c.result.dag, c.placement, options(), &rec),
                    runtime::StepError);
    CHECK(rec.before_keys.back() == expected[n - 1]);
    const std::vector<std::string> reversed(rec.taken_keys.rbegin(), rec.taken_keys.rend());
    CHECK(rec.undone_keys == reversed);
    for (const int ifindex : ifindexes)
      CHECK(attached_program(ifindex) == 0);
  }
}

TEST_CASE("datapath: one driver per space, each phase across all of them") {
  TestNamespace ns;
  const int ha = ns.ifindex("ha");
  compiler::CompileOptions o;
  o.default_devices = {"ha", "hb"};
  // rx ha, rx hb > udp > port > dns > count: the kernel copies blocks up to
  // dns from both devices, one on XDP, the other on TC.
  Compiled c{compiler::compile("(udp) > (port) 53> (dns) > (count)", o), {}};
  REQUIRE(c.result.ok());
  REQUIRE(c.result.dag->node_count() == 6);
  c.placement = runtime::fixed_placement(*c.result.dag, {"ha", "hb"}, {});
  c.placement.hooks["hb"] = {runtime::HookKind::tc, {}};
  build_and_fail_at_every_step(
      c,
      {"compile:ha", "load:ha", "compile:hb", "load:hb", "engine", "ringbuf:ha:0", "ringbuf:hb:0",
       "start:engine", "attach:ha", "attach:hb"},
      {ha});
  {
    auto dp = runtime::Datapath::build(*c.result.dag, c.placement, options());
    CHECK(dp->hooked_devices() == std::vector<std::string>{"ha", "hb"});
    RecordingObserver out;
    dp->remove(&out);
    CHECK(out.taken_keys == std::vector<std::string>{"detach:ha", "detach:hb", "stop:engine"});
  }

  // rx hb in userspace (an AF_PACKET socket), rx ha alone in the kernel.
  c.placement.in_kernel.assign(c.result.dag->node_count(), false);
  c.placement.in_kernel[0] = true;
  c.placement.hooks.erase("hb");
  build_and_fail_at_every_step(c,
                               {"compile:ha", "load:ha", "engine", "packet-socket:hb",
                                "ringbuf:ha:0", "start:engine", "attach:ha"},
                               {ha});
}
