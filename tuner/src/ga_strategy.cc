// A genetic algorithm over knob choices, after TVM's GATuner: elites by
// measured throughput, children by uniform crossover of two fitness-picked
// parents, and per-knob mutation. It uses no model, which makes it the
// model-free comparison point for the xgb strategy.
#include <algorithm>
#include <random>
#include <unordered_map>

#include "tunefarm/tuner/strategy.h"

namespace tunefarm::tuner {
namespace {

constexpr int kPopulation = 64;
constexpr double kMutationProbability = 0.1;

class GaStrategy : public SearchStrategy {
 public:
  explicit GaStrategy(const StrategyContext& c) : space_(*c.space), rng_(c.seed) {}

  std::vector<uint64_t> Propose(int n, const std::unordered_set<uint64_t>& visited) override {
    std::vector<uint64_t> out;
    std::unordered_set<uint64_t> taken;
    auto take = [&](uint64_t i) {
      if (!visited.count(i) && taken.insert(i).second) out.push_back(i);
    };
    std::vector<std::pair<uint64_t, double>> parents = Elites();
    if (parents.size() < 2) {
      for (int a = 0; static_cast<int>(out.size()) < n && a < 64 * n + 1000; ++a) take(space_.Sample(rng_));
      return out;
    }
    std::vector<double> weights;
    for (const auto& p : parents) weights.push_back(p.second + 1e-9);
    std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
    std::uniform_real_distribution<double> coin(0, 1);
    for (int a = 0; static_cast<int>(out.size()) < n && a < 64 * n + 1000; ++a) {
      kernels::Config x = space_.FromIndex(parents[pick(rng_)].first);
      kernels::Config y = space_.FromIndex(parents[pick(rng_)].first);
      std::vector<uint32_t> child(x.choices.size());
      for (size_t k = 0; k < child.size(); ++k) {
        child[k] = coin(rng_) < 0.5 ? x.choices[k] : y.choices[k];
        if (coin(rng_) < kMutationProbability) child[k] = Mutate(k, child[k], coin(rng_) < 0.5);
      }
      take(space_.FromChoices(std::move(child))->index);
    }
    // A converged population may only reproduce visited configs.
    for (int a = 0; static_cast<int>(out.size()) < n && a < 64 * n + 1000; ++a) take(space_.Sample(rng_));
    return out;
  }

  void Update(const std::vector<std::pair<uint64_t, double>>& scores) override {
    for (const auto& [i, s] : scores) fitness_[i] = s;
  }

 private:
  // Knob values are mostly ordered (tile sizes, widths), so half of the
  // mutations step to an adjacent value and half jump anywhere.
  uint32_t Mutate(size_t k, uint32_t choice, bool local) {
    const uint32_t n = static_cast<uint32_t>(space_.knobs()[k].values.size());
    if (n < 2) return choice;
    if (!local) return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_);
    if (choice == 0) return 1;
    if (choice == n - 1) return n - 2;
    return std::uniform_int_distribution<int>(0, 1)(rng_) ? choice + 1 : choice - 1;
  }

  std::vector<std::pair<uint64_t, double>> Elites() const {
    std::vector<std::pair<uint64_t, double>> all(fitness_.begin(), fitness_.end());
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    while (!all.empty() && all.back().second <= 0) all.pop_back();
    if (all.size() > kPopulation) all.resize(kPopulation);
    return all;
  }

  const kernels::ConfigSpace& space_;
  std::mt19937_64 rng_;
  std::unordered_map<uint64_t, double> fitness_;
};

}  // namespace

std::unique_ptr<SearchStrategy> NewGaStrategy(const StrategyContext& context) {
  return std::make_unique<GaStrategy>(context);
}

}  // namespace tunefarm::tuner
