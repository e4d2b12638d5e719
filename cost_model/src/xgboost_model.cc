// XgbModel over the XGBoost C API. Every C API call goes through XgbCall,
// which turns XGBoost's -1 into an absl::Status once, here at the boundary.

#include "tunefarm/cost_model/xgboost_model.h"

#include <xgboost/c_api.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

// Local to this file; abseil 20220623 has no public RETURN_IF_ERROR.
#define TF_XGB_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    absl::Status tf_xgb_status_ = (expr);            \
    if (!tf_xgb_status_.ok()) return tf_xgb_status_; \
  } while (0)

namespace tunefarm::cost_model {
namespace {

struct DMatrixDeleter {
  void operator()(DMatrixHandle h) const { XGDMatrixFree(h); }
};
struct BoosterDeleter {
  void operator()(BoosterHandle h) const { XGBoosterFree(h); }
};
using DMatrixPtr = std::unique_ptr<std::remove_pointer_t<DMatrixHandle>, DMatrixDeleter>;
using BoosterPtr = std::unique_ptr<std::remove_pointer_t<BoosterHandle>, BoosterDeleter>;

// The one place an XGBoost return code becomes a Status. `code` is the code
// for a failure: kInvalidArgument for calls whose failures come from the
// caller's data (building a matrix, parsing model bytes), kInternal for the
// rest. XGBGetLastError() is per thread and ends in a stack trace, which the
// Status leaves out.
absl::Status XgbCall(int rc, const char* call, absl::StatusCode code = absl::StatusCode::kInternal) {
  if (rc == 0) return absl::OkStatus();
  std::string_view message = XGBGetLastError();
  if (size_t trace = message.find("\nStack trace:"); trace != std::string_view::npos) {
    message = message.substr(0, trace);
  }
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.remove_suffix(1);
  return absl::Status(code, absl::StrCat("XGBoost ", call, " failed: ", std::string(message)));
}

absl::Status SetParam(BoosterHandle booster, const char* name, const std::string& value) {
  return XgbCall(XGBoosterSetParam(booster, name, value.c_str()),
                 absl::StrCat("XGBoosterSetParam(", name, "=", value, ")").c_str());
}

// Shortest text that parses back to the same double; absl::StrCat keeps only
// six significant digits.
std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : absl::StrCat(v);
}

const char* ObjectiveName(Objective objective) {
  switch (objective) {
    case Objective::kRankPairwise:
      return "rank:pairwise";
    case Objective::kRegression:
      return "reg:squarederror";
  }
  return "reg:squarederror";
}

absl::Status CheckShape(const FeatureMatrix& x) {
  if (x.cols == 0 || x.values.size() % x.cols != 0 || x.values.size() / x.cols != x.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature matrix is ", x.rows, " x ", x.cols, " but holds ", x.values.size(), " values"));
  }
  return absl::OkStatus();
}

bool AllFinite(std::span<const float> v) {
  for (float f : v) {
    if (!std::isfinite(f)) return false;
  }
  return true;
}

absl::Status ValidateTrainInput(const FeatureMatrix& x, std::span<const float> labels, std::span<const unsigned> groups,
                                const XgbParams& params, std::span<const float> weights) {
  if (x.rows == 0) return absl::InvalidArgumentError("training needs at least one row");
  TF_XGB_RETURN_IF_ERROR(CheckShape(x));
  if (labels.size() != x.rows) {
    return absl::InvalidArgumentError(absl::StrCat(labels.size(), " labels for ", x.rows, " rows"));
  }
  if (!AllFinite(labels)) return absl::InvalidArgumentError("labels must be finite");
  size_t expected_weights = x.rows;
  if (params.objective == Objective::kRankPairwise) {
    uint64_t sum = 0;
    for (unsigned g : groups) {
      if (g == 0) return absl::InvalidArgumentError("ranking groups must be non-empty");
      sum += g;
    }
    if (!groups.empty() && sum != x.rows) {
      return absl::InvalidArgumentError(absl::StrCat("ranking groups cover ", sum, " rows of ", x.rows));
    }
    if (groups.empty() && x.rows > std::numeric_limits<unsigned>::max()) {
      return absl::InvalidArgumentError("too many rows for one ranking group");
    }
    expected_weights = groups.empty() ? 1 : groups.size();
  }
  if (!weights.empty() && weights.size() != expected_weights) {
    return absl::InvalidArgumentError(absl::StrCat(weights.size(), " weights where ", expected_weights, " are needed"));
  }
  for (float w : weights) {
    if (!std::isfinite(w) || w < 0) return absl::InvalidArgumentError("weights must be finite and >= 0");
  }
  if (params.rounds <= 0) return absl::InvalidArgumentError("rounds must be positive");
  if (params.max_depth < 0) return absl::InvalidArgumentError("max_depth must be >= 0");
  if (!(params.eta > 0)) return absl::InvalidArgumentError("eta must be positive");
  if (!(params.min_child_weight >= 0)) return absl::InvalidArgumentError("min_child_weight must be >= 0");
  if (!(params.subsample > 0 && params.subsample <= 1)) {
    return absl::InvalidArgumentError("subsample must be in (0, 1]");
  }
  if (params.nthread < 0) return absl::InvalidArgumentError("nthread must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<size_t> NumFeatures(BoosterHandle booster) {
  bst_ulong n = 0;
  TF_XGB_RETURN_IF_ERROR(XgbCall(XGBoosterGetNumFeature(booster, &n), "XGBoosterGetNumFeature"));
  return static_cast<size_t>(n);
}

}  // namespace

struct XgbModel::Handle {
  BoosterPtr booster;
};

XgbModel::XgbModel(std::unique_ptr<Handle> h, size_t num_features)
    : handle_(std::move(h)), num_features_(num_features) {}
XgbModel::XgbModel(XgbModel&&) noexcept = default;
XgbModel& XgbModel::operator=(XgbModel&&) noexcept = default;
XgbModel::~XgbModel() = default;

absl::StatusOr<XgbModel> XgbModel::Train(const FeatureMatrix& x, std::span<const float> labels,
                                         std::span<const unsigned> groups, const XgbParams& params,
                                         std::span<const float> weights) {
  TF_XGB_RETURN_IF_ERROR(ValidateTrainInput(x, labels, groups, params, weights));
  const bool ranking = params.objective == Objective::kRankPairwise;

  // XGBoost copies the rows into its own (quantised, for "hist") storage, so
  // `x` need not outlive this call.
  DMatrixHandle raw_dmat = nullptr;
  TF_XGB_RETURN_IF_ERROR(
      XgbCall(XGDMatrixCreateFromMat_omp(x.values.data(), x.rows, x.cols, std::numeric_limits<float>::quiet_NaN(),
                                         &raw_dmat, params.nthread),
              "XGDMatrixCreateFromMat_omp", absl::StatusCode::kInvalidArgument));
  DMatrixPtr dtrain(raw_dmat);
  TF_XGB_RETURN_IF_ERROR(XgbCall(XGDMatrixSetFloatInfo(dtrain.get(), "label", labels.data(), labels.size()),
                                 "XGDMatrixSetFloatInfo(label)", absl::StatusCode::kInvalidArgument));
  if (ranking) {
    const unsigned all_rows = static_cast<unsigned>(x.rows);
    std::span<const unsigned> group_sizes = groups.empty() ? std::span<const unsigned>(&all_rows, 1) : groups;
    TF_XGB_RETURN_IF_ERROR(XgbCall(XGDMatrixSetUIntInfo(dtrain.get(), "group", group_sizes.data(), group_sizes.size()),
                                   "XGDMatrixSetUIntInfo(group)", absl::StatusCode::kInvalidArgument));
  }
  if (!weights.empty()) {
    TF_XGB_RETURN_IF_ERROR(XgbCall(XGDMatrixSetFloatInfo(dtrain.get(), "weight", weights.data(), weights.size()),
                                   "XGDMatrixSetFloatInfo(weight)", absl::StatusCode::kInvalidArgument));
  }

  BoosterHandle raw_booster = nullptr;
  DMatrixHandle cache[] = {dtrain.get()};
  TF_XGB_RETURN_IF_ERROR(XgbCall(XGBoosterCreate(cache, 1, &raw_booster), "XGBoosterCreate"));
  BoosterPtr booster(raw_booster);

  BoosterHandle b = booster.get();
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "verbosity", "0"));
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "objective", ObjectiveName(params.objective)));
  // "hist" bins each feature once per Train (256 bins by default) and is the
  // fastest CPU method at thousands of rows; "exact" re-sorts every round.
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "tree_method", "hist"));
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "max_depth", absl::StrCat(params.max_depth)));
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "eta", FormatDouble(params.eta)));
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "min_child_weight", FormatDouble(params.min_child_weight)));
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "subsample", FormatDouble(params.subsample)));
  // XGBoost's seed is a signed 64-bit integer; the top bit is dropped.
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "seed", absl::StrCat(static_cast<int64_t>(params.seed & uint64_t{INT64_MAX}))));
  if (params.nthread > 0) TF_XGB_RETURN_IF_ERROR(SetParam(b, "nthread", absl::StrCat(params.nthread)));

  for (int iter = 0; iter < params.rounds; ++iter) {
    TF_XGB_RETURN_IF_ERROR(XgbCall(XGBoosterUpdateOneIter(b, iter, dtrain.get()), "XGBoosterUpdateOneIter"));
  }
  auto handle = std::make_unique<Handle>();
  handle->booster = std::move(booster);
  return XgbModel(std::move(handle), x.cols);
}

absl::StatusOr<std::vector<float>> XgbModel::Predict(const FeatureMatrix& x) const {
  if (handle_ == nullptr) return absl::FailedPreconditionError("Predict on a moved-from XgbModel");
  if (x.cols != num_features_) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature matrix has ", x.cols, " columns, the model expects ", num_features_));
  }
  TF_XGB_RETURN_IF_ERROR(CheckShape(x));
  if (x.rows == 0) return std::vector<float>();

  // In-place prediction reads `x` through an __array_interface__ instead of
  // copying it into a DMatrix. The result buffer belongs to XGBoost, kept per
  // thread and per booster, so concurrent calls do not share it; it is copied
  // out before this thread makes another XGBoost call.
  const std::string array =
      absl::StrCat("{\"data\": [", reinterpret_cast<uintptr_t>(x.values.data()), ", true], \"shape\": [", x.rows, ", ",
                   x.cols, "], \"typestr\": \"<f4\", \"version\": 3}");
  static constexpr char kConfig[] =
      "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": 0, "
      "\"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* result = nullptr;
  TF_XGB_RETURN_IF_ERROR(
      XgbCall(XGBoosterPredictFromDense(handle_->booster.get(), array.c_str(), kConfig, nullptr, &shape, &dim, &result),
              "XGBoosterPredictFromDense", absl::StatusCode::kInvalidArgument));
  size_t n = 1;
  for (bst_ulong i = 0; i < dim; ++i) n *= shape[i];
  if (n != x.rows) {
    return absl::InternalError(absl::StrCat("XGBoost returned ", n, " scores for ", x.rows, " rows"));
  }
  return std::vector<float>(result, result + n);
}

absl::StatusOr<std::string> XgbModel::Save() const {
  if (handle_ == nullptr) return absl::FailedPreconditionError("Save on a moved-from XgbModel");
  bst_ulong len = 0;
  const char* bytes = nullptr;
  TF_XGB_RETURN_IF_ERROR(
      XgbCall(XGBoosterSaveModelToBuffer(handle_->booster.get(), "{\"format\": \"json\"}", &len, &bytes),
              "XGBoosterSaveModelToBuffer"));
  return std::string(bytes, len);
}

absl::StatusOr<XgbModel> XgbModel::Load(std::string_view bytes, int nthread) {
  if (nthread < 0) return absl::InvalidArgumentError("nthread must be >= 0");
  // Save writes JSON. Refusing anything else up front keeps arbitrary bytes
  // away from XGBoost's legacy binary parser.
  size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || bytes[first] != '{') {
    return absl::InvalidArgumentError("model bytes are not an XGBoost JSON model");
  }
  BoosterHandle raw_booster = nullptr;
  TF_XGB_RETURN_IF_ERROR(XgbCall(XGBoosterCreate(nullptr, 0, &raw_booster), "XGBoosterCreate"));
  BoosterPtr booster(raw_booster);
  BoosterHandle b = booster.get();
  TF_XGB_RETURN_IF_ERROR(SetParam(b, "verbosity", "0"));
  TF_XGB_RETURN_IF_ERROR(XgbCall(XGBoosterLoadModelFromBuffer(b, bytes.data(), bytes.size()),
                                 "XGBoosterLoadModelFromBuffer", absl::StatusCode::kInvalidArgument));
  if (nthread > 0) TF_XGB_RETURN_IF_ERROR(SetParam(b, "nthread", absl::StrCat(nthread)));
  // XGBoost configures a loaded booster lazily, on first use, behind a
  // double-checked flag. Configure it now, before the model is shared, so
  // concurrent first Predicts do not race on that.
  bst_ulong config_len = 0;
  const char* config = nullptr;
  TF_XGB_RETURN_IF_ERROR(XgbCall(XGBoosterSaveJsonConfig(b, &config_len, &config), "XGBoosterSaveJsonConfig",
                                 absl::StatusCode::kInvalidArgument));
  auto num_features = NumFeatures(b);
  if (!num_features.ok()) return num_features.status();
  if (*num_features == 0) return absl::InvalidArgumentError("model bytes describe a model with no features");
  auto handle = std::make_unique<Handle>();
  handle->booster = std::move(booster);
  return XgbModel(std::move(handle), *num_features);
}

}  // namespace tunefarm::cost_model
