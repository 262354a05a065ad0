// Random Request DAGs and system models, for the optimality tests and the
// plan benchmark. Deterministic for a given seed.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "srl/compiler/dag.h"
#include "srl/filters/catalog.h"
#include "srl/optimizer/system_model.h"

namespace srl::testing {

// A model with `n` spaces on device eth0: n = 2: xdp + user; 3: xdp, tc,
// user; 4: xdp, tc, 2 user; 5+: offload, xdp, tc and n-3 user cores.
inline optimizer::SystemModel random_model(std::size_t n, std::mt19937& rng, bool tight = false) {
  using optimizer::Kind;
  optimizer::SystemModel m;
  m.origin = "generated";
  m.host.memory_bandwidth_bytes_per_s = 20e9;
  std::vector<Kind> kinds;
  if (n >= 5) kinds.push_back(Kind::offload);
  kinds.push_back(Kind::xdp);
  if (n >= 3) kinds.push_back(Kind::tc);
  while (kinds.size() < n)
    kinds.push_back(Kind::user);
  std::uniform_real_distribution<double> cap(0.05e9, 1e9);
  std::uint32_t cpu = 0;
  const double core_capacity = tight ? cap(rng) : 1e9;  // cores stay interchangeable
  for (Kind k : kinds) {
    optimizer::Space s;
    s.kind = k;
    if (k == Kind::user) {
      s.cpu = cpu;
      s.id = "user:" + std::to_string(cpu++);
    } else {
      s.device = "eth0";
      s.id = std::string(optimizer::to_string(k)) + ":eth0";
      s.ebpf_insn_limit = tight ? 60 : 1'000'000;
    }
    s.capacity_ns_per_s = k == Kind::user ? core_capacity : tight ? cap(rng) : 1e9;
    m.spaces.push_back(s);
  }
  optimizer::add_default_channels(m);
  return m;
}

// A DAG of `n` nodes fed by one rx on eth0: mostly chains and trees of
// random catalog filters, some nodes with a second input, sinks at leaves.
// A DAG has drops or passes, not both: a pass below a node whose blocks a
// drop takes pins that node to the kernel, and with userspace-only filters
// above both most large DAGs could not be placed at all.
inline compiler::RequestDag random_dag(std::size_t n, std::mt19937& rng,
                                       double second_input = 0.1) {
  const auto& cat = filters::Catalog::builtin();
  const std::string_view left_out = rng() % 2 ? "pass" : "drop";
  std::vector<const filters::FilterSpec*> mids, sinks;
  for (const auto& f : cat.all()) {
    if (f.role == filters::Role::filter && f.options.empty()) mids.push_back(&f);
    if (f.role == filters::Role::sink && f.name != "tx" && f.name != "fifo" && f.name != "pcap" &&
        f.name != left_out)
      sinks.push_back(&f);
  }
  compiler::RequestDag dag;
  dag.file = "random";
  auto add = [&](const filters::FilterSpec* f) {
    compiler::DagNode node;
    node.id = "n" + std::to_string(boost::num_vertices(dag.graph));
    node.filter = f;
    return boost::add_vertex(node, dag.graph);
  };
  compiler::DagNode rx;
  rx.id = "n0";
  rx.filter = cat.find("rx");
  rx.options["dev"] = std::string("eth0");
  boost::add_vertex(rx, dag.graph);
  std::vector<compiler::Vertex> open = {0};  // nodes that may take an output
  std::uniform_real_distribution<double> u(0, 1);
  for (std::size_t i = 1; i < n; ++i) {
    const bool sink = i + 1 == n || u(rng) < 0.15;
    const auto* f = sink ? sinks[rng() % sinks.size()] : mids[rng() % mids.size()];
    // Prefer recent nodes: chains and trees rather than stars.
    const std::size_t k = open.size();
    const std::size_t pick =
        k - 1 -
        std::min<std::size_t>(k - 1,
                              static_cast<std::size_t>(u(rng) * u(rng) * static_cast<double>(k)));
    const compiler::Vertex parent = open[pick];
    const compiler::Vertex v = add(f);
    compiler::DagEdge e;
    e.select.rejected = u(rng) < 0.1 && dag.graph[parent].filter->role != filters::Role::source;
    boost::add_edge(parent, v, e, dag.graph);
    if (k > 1 && u(rng) < second_input) {
      const compiler::Vertex other = open[rng() % k];
      if (other != parent) boost::add_edge(other, v, compiler::DagEdge{}, dag.graph);
    }
    if (!sink) open.push_back(v);
  }
  return dag;
}

}  // namespace srl::testing
