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
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::tuner {

// A measured config of another workload of the same template on the same
// device key, for transfer learning.
struct TransferRecord {
  std::string workload_key;
  uint64_t config_index = 0;
  double throughput = 0;  // FLOP/s; 0 for a failed candidate
};

// What a strategy may look at. Everything must outlive the strategy.
struct StrategyContext {
  const kernels::Template* tmpl = nullptr;
  const kernels::Workload* workload = nullptr;
  const kernels::ConfigSpace* space = nullptr;
  uint64_t seed = 0;
  // Used by model-based strategies to warm-start their model.
  std::vector<TransferRecord> transfer;
  // A model saved by an earlier run (SearchStrategy::SavedModel), used until
  // this task has data of its own when there is nothing to transfer from.
  std::string saved_model;
  // xgb: regression on normalised throughput instead of pairwise ranking.
  bool regression = false;
};

class SearchStrategy {
 public:
  virtual ~SearchStrategy() = default;
  // Up to `n` distinct config indices not in `visited`; fewer only when the
  // space has no more unvisited configs the strategy can find.
  virtual std::vector<uint64_t> Propose(int n, const std::unordered_set<uint64_t>& visited) = 0;
  // Measured throughput (FLOP/s; 0 for a failed candidate) of configs,
  // including earlier runs' records when a task resumes.
  virtual void Update(const std::vector<std::pair<uint64_t, double>>& /*scores*/) {}
  // The strategy's current model as bytes, for the tuning log; empty for
  // model-free strategies.
  virtual std::string SavedModel() const { return {}; }
};

// "random": uniform sampling without replacement (TVM's RandomTuner).
// "grid": index order from 0, skipping visited configs (TVM's GridSearchTuner).
// "ga": a genetic algorithm over knob values (model-free).
// "xgb": XGBoost ranking model + simulated annealing (the default).
absl::StatusOr<std::unique_ptr<SearchStrategy>> NewStrategy(std::string_view name, const StrategyContext& context);
std::vector<std::string> StrategyNames();
// Whether a strategy uses transfer records and saved models (reading them
// costs a tuning loop's start-up time, so model-free strategies skip it).
bool StrategyLearnsFromHistory(std::string_view name);

// Model-free and model-based strategies live in their own files.
std::unique_ptr<SearchStrategy> NewGaStrategy(const StrategyContext& context);
absl::StatusOr<std::unique_ptr<SearchStrategy>> NewXgbStrategy(const StrategyContext& context);

}  // namespace tunefarm::tuner
