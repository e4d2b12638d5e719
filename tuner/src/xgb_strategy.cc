// The model-guided strategy (after TVM's XGBTuner with its simulated-
// annealing optimizer): an XGBoost ranking model over IR features, retrained
// after every batch, steers parallel annealing walkers through the space; a
// batch is the best-scored unmeasured configs, thinned for diversity, plus a
// small random share.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <unordered_map>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"
#include "tunefarm/cost_model/features.h"
#include "tunefarm/cost_model/xgboost_model.h"
#include "tunefarm/tuner/strategy.h"

namespace tunefarm::tuner {
namespace {

constexpr int kWalkers = 128;
constexpr int kSteps = 60;
constexpr double kEpsilon = 0.05;  // share of each batch drawn at random
// Transfer rows weigh kTransferFade / (kTransferFade + own rows): they lead
// while this task has little data and fade as it grows.
constexpr double kTransferFade = 64;
// A batch prefers configs that differ from each other in >= this many knobs.
constexpr int kMinKnobDistance = 2;

int KnobDistance(const kernels::Config& a, const kernels::Config& b) {
  int d = 0;
  for (size_t i = 0; i < a.choices.size(); ++i) d += a.choices[i] != b.choices[i];
  return d;
}

// Rows of one task (workload) for training.
struct TaskRows {
  std::vector<float> x;
  std::vector<float> throughput;  // FLOP/s, 0 for failures
};

class XgbStrategy : public SearchStrategy {
 public:
  explicit XgbStrategy(const StrategyContext& c)
      : ctx_(c), space_(*c.space), rng_(c.seed), dim_(cost_model::FeatureCount(*c.space)) {
    LoadTransfer();
    if (!model_ && !ctx_.saved_model.empty()) {
      absl::StatusOr<cost_model::XgbModel> m = cost_model::XgbModel::Load(ctx_.saved_model, /*nthread=*/1);
      if (m.ok() && m->num_features() == dim_) {
        spdlog::info("xgb: starting from the model saved by an earlier run");
        model_ = std::make_unique<cost_model::XgbModel>(std::move(*m));
      }
    }
  }

  std::string SavedModel() const override {
    if (!model_) return {};
    absl::StatusOr<std::string> bytes = model_->Save();
    return bytes.ok() ? *bytes : std::string();
  }

  std::vector<uint64_t> Propose(int n, const std::unordered_set<uint64_t>& visited) override {
    std::vector<uint64_t> out;
    std::unordered_set<uint64_t> taken;
    // Configs the template cannot instantiate (say, GPU tiles that need
    // more threads than a block has) would only spend trials on errors.
    auto take = [&](uint64_t i) {
      if (static_cast<int>(out.size()) < n && !visited.count(i) && Instantiable(i) && taken.insert(i).second) {
        out.push_back(i);
      }
    };
    if (model_) {
      int random_share = static_cast<int>(std::floor(kEpsilon * n + 0.5));
      for (uint64_t i : Anneal(n - random_share, visited)) take(i);
    }
    for (int a = 0; static_cast<int>(out.size()) < n && a < 64 * n + 1000; ++a) take(space_.Sample(rng_));
    return out;
  }

  void Update(const std::vector<std::pair<uint64_t, double>>& scores) override {
    for (const auto& [i, s] : scores) {
      if (!own_index_.emplace(i, own_.throughput.size()).second) continue;
      const std::vector<float>& f = Features(i);
      own_.x.insert(own_.x.end(), f.begin(), f.end());
      own_.throughput.push_back(static_cast<float>(s));
      if (s > 0) best_.emplace_back(s, i);
    }
    std::sort(best_.rbegin(), best_.rend());
    if (best_.size() > kWalkers) best_.resize(kWalkers);
    Retrain();
  }

 private:
  bool Instantiable(uint64_t index) {
    Features(index);
    return !broken_.count(index);
  }

  const std::vector<float>& Features(uint64_t index) {
    auto it = features_.find(index);
    if (it != features_.end()) return it->second;
    kernels::Config c = space_.FromIndex(index);
    absl::StatusOr<kernels::Kernel> k = ctx_.tmpl->Instantiate(*ctx_.workload, space_, c);
    if (!k.ok()) broken_.insert(index);
    std::vector<float> f = k.ok() ? cost_model::ExtractFeatures(k->func, space_, c) : std::vector<float>(dim_, 0.0f);
    return features_.emplace(index, std::move(f)).first->second;
  }

  // Records of other shapes become one training group each.
  void LoadTransfer() {
    std::map<std::string, std::vector<const TransferRecord*>> by_workload;
    for (const TransferRecord& r : ctx_.transfer) by_workload[r.workload_key].push_back(&r);
    for (const auto& [key, records] : by_workload) {
      absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(key);
      if (!w.ok() || w->op != ctx_.workload->op) continue;
      absl::StatusOr<kernels::ConfigSpace> space = ctx_.tmpl->Space(*w);
      if (!space.ok() || cost_model::FeatureCount(*space) != dim_) continue;
      TaskRows rows;
      for (const TransferRecord* r : records) {
        if (r->config_index >= space->size()) continue;
        kernels::Config c = space->FromIndex(r->config_index);
        absl::StatusOr<kernels::Kernel> k = ctx_.tmpl->Instantiate(*w, *space, c);
        if (!k.ok()) continue;
        std::vector<float> f = cost_model::ExtractFeatures(k->func, *space, c);
        rows.x.insert(rows.x.end(), f.begin(), f.end());
        rows.throughput.push_back(static_cast<float>(r->throughput));
      }
      if (rows.throughput.size() >= 2) transfer_.push_back(std::move(rows));
    }
    if (!transfer_.empty()) {
      spdlog::info("xgb: warm start from {} other workload(s), {} records", transfer_.size(), ctx_.transfer.size());
      Retrain();
    }
  }

  // Labels: throughput relative to the task's best, so tasks of different
  // shapes share a scale; failures rank last (0). Ranking compares rows only
  // within their task (group); regression fits the normalised values.
  void Retrain() {
    std::vector<float> x, labels, weights;
    std::vector<unsigned> groups;
    const double own_rows = static_cast<double>(own_.throughput.size());
    auto add = [&](const TaskRows& t, double weight) {
      if (t.throughput.size() < 2) return;
      float best = *std::max_element(t.throughput.begin(), t.throughput.end());
      x.insert(x.end(), t.x.begin(), t.x.end());
      for (float v : t.throughput) labels.push_back(best > 0 ? v / best : 0.0f);
      groups.push_back(static_cast<unsigned>(t.throughput.size()));
      // XGBoost takes ranking weights per group and regression weights per row.
      weights.insert(weights.end(), ctx_.regression ? t.throughput.size() : 1, static_cast<float>(weight));
    };
    add(own_, 1.0);
    for (const TaskRows& t : transfer_) add(t, kTransferFade / (kTransferFade + own_rows));
    if (groups.empty()) return;
    cost_model::XgbParams params;
    params.seed = ctx_.seed;
    params.objective = ctx_.regression ? cost_model::Objective::kRegression : cost_model::Objective::kRankPairwise;
    // One thread: the machine is busy compiling and measuring candidates,
    // and XGBoost's spinning OpenMP workers would slow both down.
    params.nthread = 1;
    absl::StatusOr<cost_model::XgbModel> m =
        cost_model::XgbModel::Train({x, labels.size(), dim_}, labels, groups, params, weights);
    if (!m.ok()) {
      spdlog::warn("xgb: training failed, keeping the previous model: {}", std::string(m.status().message()));
      return;
    }
    model_ = std::make_unique<cost_model::XgbModel>(std::move(*m));
  }

  std::vector<float> Score(const std::vector<uint64_t>& indices) {
    std::vector<float> x;
    x.reserve(indices.size() * dim_);
    for (uint64_t i : indices) {
      const std::vector<float>& f = Features(i);
      x.insert(x.end(), f.begin(), f.end());
    }
    absl::StatusOr<std::vector<float>> s = model_->Predict({x, indices.size(), dim_});
    return s.ok() ? *s : std::vector<float>(indices.size(), 0.0f);
  }

  // Walkers start at the best measured configs (then random ones) and take
  // one-knob steps, accepted by the Metropolis rule under a cooling
  // temperature scaled to the spread of the model's scores.
  std::vector<uint64_t> Anneal(int n, const std::unordered_set<uint64_t>& visited) {
    if (n <= 0) return {};
    std::vector<uint64_t> walkers;
    for (const auto& [s, i] : best_) walkers.push_back(i);
    while (walkers.size() < kWalkers) walkers.push_back(space_.Sample(rng_));
    std::vector<float> scores = Score(walkers);
    std::map<uint64_t, float> seen;  // every point scored on the way
    for (size_t w = 0; w < walkers.size(); ++w) seen[walkers[w]] = scores[w];
    float mean = std::accumulate(scores.begin(), scores.end(), 0.0f) / scores.size(), var = 0;
    for (float s : scores) var += (s - mean) * (s - mean);
    const double t0 = std::max(1e-3, std::sqrt(static_cast<double>(var) / static_cast<double>(scores.size())));
    std::uniform_real_distribution<double> coin(0, 1);
    for (int step = 0; step < kSteps; ++step) {
      const double temperature = t0 * (1.0 - static_cast<double>(step) / kSteps);
      std::vector<uint64_t> next(walkers.size());
      for (size_t w = 0; w < walkers.size(); ++w) next[w] = RandomNeighbor(walkers[w]);
      std::vector<float> next_scores = Score(next);
      for (size_t w = 0; w < walkers.size(); ++w) {
        seen[next[w]] = next_scores[w];
        double gain = next_scores[w] - scores[w];
        if (gain >= 0 || (temperature > 0 && coin(rng_) < std::exp(gain / temperature))) {
          walkers[w] = next[w];
          scores[w] = next_scores[w];
        }
      }
    }
    std::vector<std::pair<float, uint64_t>> ranked;
    for (const auto& [i, s] : seen) {
      if (!visited.count(i)) ranked.emplace_back(s, i);
    }
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    // Best first, skipping near-copies of what is already chosen; the
    // skipped ones fill up if too few distinct configs remain.
    std::vector<uint64_t> chosen, skipped;
    std::vector<kernels::Config> chosen_configs;
    for (const auto& [s, i] : ranked) {
      if (static_cast<int>(chosen.size()) >= n) break;
      kernels::Config c = space_.FromIndex(i);
      bool near = std::any_of(chosen_configs.begin(), chosen_configs.end(),
                              [&](const kernels::Config& o) { return KnobDistance(c, o) < kMinKnobDistance; });
      if (near) {
        skipped.push_back(i);
      } else {
        chosen.push_back(i);
        chosen_configs.push_back(std::move(c));
      }
    }
    for (size_t k = 0; static_cast<int>(chosen.size()) < n && k < skipped.size(); ++k) chosen.push_back(skipped[k]);
    return chosen;
  }

  uint64_t RandomNeighbor(uint64_t index) {
    kernels::Config c = space_.FromIndex(index);
    std::vector<size_t> movable;
    for (size_t k = 0; k < c.choices.size(); ++k) {
      if (space_.knobs()[k].values.size() > 1) movable.push_back(k);
    }
    if (movable.empty()) return index;
    size_t k = movable[std::uniform_int_distribution<size_t>(0, movable.size() - 1)(rng_)];
    uint32_t n = static_cast<uint32_t>(space_.knobs()[k].values.size());
    uint32_t v = std::uniform_int_distribution<uint32_t>(0, n - 2)(rng_);
    c.choices[k] = v >= c.choices[k] ? v + 1 : v;  // any other value
    return space_.FromChoices(std::move(c.choices))->index;
  }

  const StrategyContext ctx_;
  const kernels::ConfigSpace& space_;
  std::mt19937_64 rng_;
  const size_t dim_;
  std::unordered_map<uint64_t, std::vector<float>> features_;
  std::unordered_set<uint64_t> broken_;  // configs that failed to instantiate
  TaskRows own_;
  std::unordered_map<uint64_t, size_t> own_index_;
  std::vector<std::pair<double, uint64_t>> best_;  // (throughput, index), best first
  std::vector<TaskRows> transfer_;
  std::unique_ptr<cost_model::XgbModel> model_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SearchStrategy>> NewXgbStrategy(const StrategyContext& context) {
  if (context.tmpl == nullptr || context.workload == nullptr) {
    return absl::InvalidArgumentError("the xgb strategy needs the template and the workload");
  }
  return std::make_unique<XgbStrategy>(context);
}

}  // namespace tunefarm::tuner
