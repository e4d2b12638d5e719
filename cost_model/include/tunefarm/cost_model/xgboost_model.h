// An owning wrapper over the XGBoost C API: gradient-boosted trees trained on
// feature rows, used by the cost model to rank candidate configs. Every C API
// failure becomes an absl::Status carrying XGBGetLastError().
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::cost_model {

enum class Objective {
  kRankPairwise,  // "rank:pairwise": labels only need to order rows within a group
  kRegression,    // "reg:squarederror"
};

struct XgbParams {
  Objective objective = Objective::kRankPairwise;
  int rounds = 60;  // boosting iterations
  int max_depth = 6;
  double eta = 0.3;  // learning rate
  double min_child_weight = 1;
  double subsample = 1.0;
  // OpenMP threads for training and for every Predict on the trained model
  // (each Predict call runs its own parallel region). 0: XGBoost's default,
  // all cores. Training ends every tree level in an OpenMP barrier, so on a
  // busy machine spinning waiters starve the thread they wait for: 5,000 x 80
  // rows took 0.6 s with 2 threads on an idle 2-core machine, 1.1 s with 1,
  // and 6-16 s with 2 while other processes kept it loaded. Pick nthread below
  // the cores that are really free, or run with OMP_WAIT_POLICY=passive.
  // Callers that predict from many threads at once should also keep it low.
  int nthread = 0;
  uint64_t seed = 0;
};

// A dense matrix of features, row-major: rows x cols floats. NaN means missing.
struct FeatureMatrix {
  std::span<const float> values;
  size_t rows = 0;
  size_t cols = 0;
};

// Thread safety: Predict may run concurrently with other Predict calls on
// the same model (XGBoost >= 1.4 keeps prediction buffers per thread and per
// booster, and a model is never trained after it is built). Train/Load produce
// new models; moving or destroying a model must not race with its use.
class XgbModel {
 public:
  XgbModel(XgbModel&&) noexcept;
  XgbModel& operator=(XgbModel&&) noexcept;
  ~XgbModel();

  // Trains a new model. `labels` has one value per row (higher = better for
  // ranking). `groups` lists the sizes of consecutive row groups for ranking
  // (must sum to rows; empty = one group); ignored for regression. `weights`
  // is empty or one per row (ranking: one per group, as XGBoost wants), each
  // finite and >= 0. InvalidArgument for inconsistent sizes, empty input or
  // groups, non-finite labels, infinite features or out-of-range params.
  // XGBoost copies what it needs: `x` may be freed once Train returns.
  static absl::StatusOr<XgbModel> Train(const FeatureMatrix& x, std::span<const float> labels,
                                        std::span<const unsigned> groups, const XgbParams& params,
                                        std::span<const float> weights = {});

  // One score per row; x.cols must equal num_features(). Zero rows give an
  // empty vector. Scores are computed in place from x (no copy of the
  // features). NaN is missing; unlike Train, which rejects them, infinite
  // values are accepted and compare against split thresholds as usual.
  absl::StatusOr<std::vector<float>> Predict(const FeatureMatrix& x) const;

  // The model as bytes (XGBoost's JSON model format), and back. Training
  // parameters are not part of the bytes: `nthread` sets the threads Predict
  // uses on the loaded model (0: all cores). Load accepts only what Save
  // writes (a JSON document); anything else is InvalidArgument.
  absl::StatusOr<std::string> Save() const;
  static absl::StatusOr<XgbModel> Load(std::string_view bytes, int nthread = 0);

  size_t num_features() const { return num_features_; }

 private:
  struct Handle;
  XgbModel(std::unique_ptr<Handle> h, size_t num_features);
  std::unique_ptr<Handle> handle_;
  size_t num_features_ = 0;
};

}  // namespace tunefarm::cost_model
