// Search strategies: which configs of a space to measure next.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/config_space.h"

namespace tunefarm::tuner {

class SearchStrategy {
 public:
  virtual ~SearchStrategy() = default;
  // Up to `n` distinct config indices not in `visited`; fewer only when the
  // space has no more unvisited configs the strategy can find.
  virtual std::vector<uint64_t> Propose(int n, const std::unordered_set<uint64_t>& visited) = 0;
  // Measured throughput (FLOP/s; 0 for a failed candidate) of proposed configs.
  virtual void Update(const std::vector<std::pair<uint64_t, double>>& /*scores*/) {}
};

// "random": uniform sampling without replacement (TVM's RandomTuner).
// "grid": index order from 0, skipping visited configs (TVM's GridSearchTuner).
// The space must outlive the strategy.
absl::StatusOr<std::unique_ptr<SearchStrategy>> NewStrategy(std::string_view name, const kernels::ConfigSpace& space,
                                                            uint64_t seed);
std::vector<std::string> StrategyNames();

}  // namespace tunefarm::tuner
