// On random small instances the program's optimum equals exhaustive search's
// and is never worse than a feasible baseline.
#include <doctest/doctest.h>

#include <cmath>

#include "random_instance.h"
#include "srl/optimizer/optimizer.h"

using namespace srl;
using namespace srl::optimizer;

TEST_CASE(
    "MILP optimum == exhaustive optimum on 240 random instances; never worse than baselines") {
  std::size_t solved = 0, infeasible = 0, unplaceable = 0, beat_pd = 0, beat_au = 0, shared = 0;
  for (unsigned seed = 1; seed <= 240; ++seed) {
    std::mt19937 rng(seed);
    const std::size_t spaces = 2 + seed % 4;       // 2..5
    const std::size_t nodes = 3 + (seed / 4) % 5;  // 3..7
    const bool tight = seed % 3 != 0;              // random capacities and a small insn limit
    const SystemModel model = testing::random_model(spaces, rng, tight);
    const compiler::RequestDag dag = testing::random_dag(nodes, rng, 0.3);
    PlanOptions po;
    po.objective = static_cast<Objective>(seed % 3);
    po.input_rate_pps = 2e5;
    CAPTURE(seed);
    Problem p;
    try {
      p = build_problem({{&dag, "", nullptr}}, model, po);
    } catch (const PlanError&) {
      ++unplaceable;
      continue;
    }
    const auto milp = solve_milp(p);
    const auto brute = solve_exhaustive(p);
    REQUIRE(milp.has_value() == brute.has_value());
    if (!milp) {
      ++infeasible;
      continue;
    }
    ++solved;
    const Evaluation em = evaluate(p, *milp), eb = evaluate(p, *brute);
    REQUIRE_MESSAGE(em.feasible, em.violation);
    CHECK(em.objective == doctest::Approx(eb.objective).epsilon(1e-6));
    // Optima where two edges of a bundle cross together (one crossing paid).
    const auto payer = p.crossing_payers(*milp);
    bool rides = false;
    for (std::size_t i = 0; i < payer.size(); ++i)
      rides = rides || payer[i] != i;
    shared += rides ? 1 : 0;
    for (auto baseline : {baseline_push_down, baseline_all_user}) {
      if (auto a = baseline(p, nullptr)) {
        const Evaluation ea = evaluate(p, *a);
        if (!ea.feasible) continue;
        CHECK(em.objective <= ea.objective * (1 + 1e-9) + 1e-12);
        if (em.objective < ea.objective * (1 - 1e-6))
          ++(baseline == baseline_push_down ? beat_pd : beat_au);
      }
    }
  }
  MESSAGE("solved ", solved, ", infeasible ", infeasible, ", rejected before solving ", unplaceable,
          "; strictly better than push-down ", beat_pd, ", than all-user ", beat_au,
          "; with a shared crossing ", shared);
  CHECK(solved >= 200);
  CHECK(infeasible > 0);  // the tight instances do exercise the constraints
  CHECK(beat_pd > 0);
  CHECK(beat_au > 0);
  CHECK(shared > 0);  // bundled crossings are exercised
}
