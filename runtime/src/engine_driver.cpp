// The userspace engine's driver (space_driver.h).
#include <algorithm>

#include "space_driver.h"

namespace srl::runtime {

namespace {

class EngineDriver final : public SpaceDriver {
 public:
  EngineDriver(DatapathBuild& build, std::vector<bool> in_user,
               std::vector<kernel::KernelExit> exits, std::vector<SpaceDriver*> feeds)
      : build_(build),
        in_user_(std::move(in_user)),
        exits_(std::move(exits)),
        feeds_(std::move(feeds)) {}

  // The userspace filters built (their files opened).
  void instantiate(Transaction& tx) override {
    tx.take(
        {Phase::instantiate, "engine", "build the userspace filters"},
        [&] {
          std::vector<EngineEntry> entries(exits_.size());
          for (const auto& e : exits_)
            entries.at(e.bit) = {e.from, e.to};
          EngineOptions eo;
          eo.workers = std::max<std::size_t>(build_.placement.workers, 1);
          eo.max_batch = build_.options.batch;
          eo.file_owner_of = build_.options.file_owner_of;
          build_.impl.engine =
              std::make_unique<Engine>(build_.dag, in_user_, std::move(entries), eo);
          build_.report.push_back("userspace engine: " + std::to_string(eo.workers) + " worker" +
                                  (eo.workers == 1 ? "" : "s"));
        },
        [this] { build_.impl.engine.reset(); });
  }

  // An AF_PACKET socket for each rx node in userspace.
  void connect(Transaction& tx) override {
    const auto& g = build_.dag.graph;
    Engine& engine = *build_.impl.engine;
    for (const auto& id : engine.rx_nodes()) {
      const auto& dev = std::get<std::string>(g[*build_.dag.find(id)].options.at("dev"));
      tx.take(
          {Phase::connect, "packet-socket:" + dev, "open an AF_PACKET socket on " + dev},
          [&] {
            PacketSocketOptions po;
            po.dev = dev;
            inputs_.push_back(packet_socket_input(std::make_unique<PacketSocketSource>(po),
                                                  engine.source_entry(id)));
            build_.report.push_back(dev + ": rx in userspace (AF_PACKET)");
          },
          [this] { inputs_.pop_back(); });
    }
  }

  // Started with every channel, before any hook sends it blocks.
  void activate(Transaction& tx) override {
    Engine& engine = *build_.impl.engine;
    tx.take(
        {Phase::activate, "start:engine", "start the userspace engine"},
        [&] {
          // The engine owns its inputs from here; their slots stay, emptied,
          // for the inverses of the steps that filled them.
          for (auto& in : inputs_)
            engine.add_input(std::move(in));
          for (auto* feed : feeds_)
            for (auto& in : feed->take_channels())
              engine.add_input(std::move(in));
          engine.start();
        },
        [this] {
          build_.impl.engine->stop();
          build_.impl.engine->wait();
        });
  }

 private:
  DatapathBuild& build_;
  std::vector<bool> in_user_;
  std::vector<kernel::KernelExit> exits_;
  std::vector<SpaceDriver*> feeds_;
  std::vector<std::unique_ptr<BlockInput>> inputs_;  // connected, not yet in the engine
};

}  // namespace

std::unique_ptr<SpaceDriver> engine_driver(DatapathBuild& build, std::vector<bool> in_user,
                                           std::vector<kernel::KernelExit> exits,
                                           std::vector<SpaceDriver*> feeds) {
  return std::make_unique<EngineDriver>(build, std::move(in_user), std::move(exits),
                                        std::move(feeds));
}

}  // namespace srl::runtime
