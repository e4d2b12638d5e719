#include "tunefarm/tuner/strategy.h"

#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tunefarm::tuner {
namespace {

class RandomStrategy : public SearchStrategy {
 public:
  RandomStrategy(const kernels::ConfigSpace& space, uint64_t seed) : space_(space), rng_(seed) {}

  std::vector<uint64_t> Propose(int n, const std::unordered_set<uint64_t>& visited) override {
    std::vector<uint64_t> out;
    std::unordered_set<uint64_t> taken;
    auto take = [&](uint64_t i) {
      if (!visited.count(i) && taken.insert(i).second) out.push_back(i);
    };
    // Rejection sampling is exact and cheap while most of the space is
    // unvisited; near exhaustion a scan from a random point finishes the job.
    for (int attempts = 0; static_cast<int>(out.size()) < n && attempts < 64 * n + 1000; ++attempts) {
      take(space_.Sample(rng_));
    }
    if (static_cast<int>(out.size()) < n && visited.size() + taken.size() < space_.size()) {
      uint64_t start = space_.Sample(rng_);
      for (uint64_t k = 0; k < space_.size() && static_cast<int>(out.size()) < n; ++k) {
        take((start + k) % space_.size());
      }
    }
    return out;
  }

 private:
  const kernels::ConfigSpace& space_;
  std::mt19937_64 rng_;
};

class GridStrategy : public SearchStrategy {
 public:
  explicit GridStrategy(const kernels::ConfigSpace& space) : space_(space) {}

  std::vector<uint64_t> Propose(int n, const std::unordered_set<uint64_t>& visited) override {
    std::vector<uint64_t> out;
    for (; next_ < space_.size() && static_cast<int>(out.size()) < n; ++next_) {
      if (!visited.count(next_)) out.push_back(next_);
    }
    return out;
  }

 private:
  const kernels::ConfigSpace& space_;
  uint64_t next_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SearchStrategy>> NewStrategy(std::string_view name, const StrategyContext& context) {
  if (context.space == nullptr) return absl::InvalidArgumentError("strategy needs a config space");
  if (name == "random") return std::make_unique<RandomStrategy>(*context.space, context.seed);
  if (name == "grid") return std::make_unique<GridStrategy>(*context.space);
  if (name == "ga") return NewGaStrategy(context);
  if (name == "xgb") return NewXgbStrategy(context);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown strategy '", std::string(name), "' (available: random, grid, ga, xgb)"));
}

std::vector<std::string> StrategyNames() { return {"random", "grid", "ga", "xgb"}; }

bool StrategyLearnsFromHistory(std::string_view name) { return name == "xgb"; }

}  // namespace tunefarm::tuner
