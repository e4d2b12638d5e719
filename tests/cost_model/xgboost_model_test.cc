#include "tunefarm/cost_model/xgboost_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace tunefarm::cost_model {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// rows x cols features uniform in [0, 1), row-major.
struct Data {
  std::vector<float> values;
  size_t rows = 0;
  size_t cols = 0;
  FeatureMatrix matrix() const { return {values, rows, cols}; }
  float at(size_t r, size_t c) const { return values[r * cols + c]; }
};

Data RandomFeatures(size_t rows, size_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Data d{std::vector<float>(rows * cols), rows, cols};
  for (float& v : d.values) v = u(rng);
  return d;
}

// The "throughput" the ranking test learns: depends on x0 and x1 only, and
// non-monotonically on x0 (a best tile size in the middle).
float Throughput(const Data& d, size_t r) {
  const float x0 = d.at(r, 0), x1 = d.at(r, 1);
  return 1.0f - 4.0f * (x0 - 0.6f) * (x0 - 0.6f) + 0.8f * x1;
}

// Fraction of pairs with distinct truth that `pred` orders like `truth`.
double PairwiseAccuracy(const std::vector<float>& truth, const std::vector<float>& pred) {
  size_t agree = 0, total = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    for (size_t j = i + 1; j < truth.size(); ++j) {
      if (truth[i] == truth[j]) continue;
      ++total;
      if ((truth[i] < truth[j]) == (pred[i] < pred[j]) && pred[i] != pred[j]) ++agree;
    }
  }
  return total == 0 ? 0.0 : static_cast<double>(agree) / static_cast<double>(total);
}

XgbParams SmallParams(Objective objective) {
  XgbParams p;
  p.objective = objective;
  p.rounds = 40;
  p.max_depth = 4;
  p.eta = 0.2;
  // One thread: multi-threaded training slows down sharply when ctest runs
  // other binaries beside this one (see XgbParams::nthread).
  p.nthread = 1;
  p.seed = 7;
  return p;
}

// A small trained ranking model over 5 features, for the tests that need any model.
XgbModel SmallModel() {
  Data x = RandomFeatures(200, 5, 1);
  std::vector<float> y(x.rows);
  for (size_t r = 0; r < x.rows; ++r) y[r] = Throughput(x, r);
  auto model = XgbModel::Train(x.matrix(), y, {}, SmallParams(Objective::kRankPairwise));
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(model).value();
}

TEST(XgbModelTest, RankingLearnsOrderFromTwoOfFiveFeatures) {
  Data train = RandomFeatures(1000, 5, 11);
  std::mt19937 rng(12);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<float> labels(train.rows);
  for (size_t r = 0; r < train.rows; ++r) labels[r] = Throughput(train, r) + noise(rng);
  // Ten workloads of 100 measured configs each: labels compare only within a group.
  std::vector<unsigned> groups(10, 100);

  auto model = XgbModel::Train(train.matrix(), labels, groups, SmallParams(Objective::kRankPairwise));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->num_features(), 5u);

  Data test = RandomFeatures(400, 5, 13);
  std::vector<float> truth(test.rows);
  for (size_t r = 0; r < test.rows; ++r) truth[r] = Throughput(test, r);
  auto pred = model->Predict(test.matrix());
  ASSERT_TRUE(pred.ok()) << pred.status();
  ASSERT_EQ(pred->size(), test.rows);
  const double accuracy = PairwiseAccuracy(truth, *pred);
  std::printf("ranking held-out pairwise accuracy: %.3f\n", accuracy);
  EXPECT_GT(accuracy, 0.8);
}

TEST(XgbModelTest, RegressionFitsASimpleFunction) {
  auto f = [](const Data& d, size_t r) { return 3.0f * d.at(r, 0) - 2.0f * d.at(r, 1) + d.at(r, 2) * d.at(r, 3); };
  Data train = RandomFeatures(2000, 4, 21);
  std::vector<float> y(train.rows);
  for (size_t r = 0; r < train.rows; ++r) y[r] = f(train, r);
  XgbParams params = SmallParams(Objective::kRegression);
  params.rounds = 100;
  params.max_depth = 5;
  // Groups are ignored for regression, even inconsistent ones.
  const std::vector<unsigned> ignored = {1, 2, 3};
  auto model = XgbModel::Train(train.matrix(), y, ignored, params);
  ASSERT_TRUE(model.ok()) << model.status();

  Data test = RandomFeatures(500, 4, 22);
  auto pred = model->Predict(test.matrix());
  ASSERT_TRUE(pred.ok()) << pred.status();
  double sq = 0;
  for (size_t r = 0; r < test.rows; ++r) sq += std::pow((*pred)[r] - f(test, r), 2);
  const double rmse = std::sqrt(sq / static_cast<double>(test.rows));
  std::printf("regression held-out RMSE: %.4f (target range about 6)\n", rmse);
  EXPECT_LT(rmse, 0.15);
}

TEST(XgbModelTest, MissingFeaturesAreAllowed) {
  Data x = RandomFeatures(300, 3, 31);
  for (size_t r = 0; r < x.rows; r += 7) x.values[r * x.cols + 2] = kNaN;
  std::vector<float> y(x.rows);
  for (size_t r = 0; r < x.rows; ++r) y[r] = x.at(r, 0);
  auto model = XgbModel::Train(x.matrix(), y, {}, SmallParams(Objective::kRegression));
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<float> all_missing(3, kNaN);
  auto pred = model->Predict({all_missing, 1, 3});
  ASSERT_TRUE(pred.ok()) << pred.status();
  EXPECT_TRUE(std::isfinite((*pred)[0]));
}

TEST(XgbModelTest, WeightsAreOnePerGroupForRankingAndOnePerRowForRegression) {
  Data x = RandomFeatures(100, 3, 41);
  std::vector<float> y(x.rows);
  for (size_t r = 0; r < x.rows; ++r) y[r] = x.at(r, 1);
  const std::vector<unsigned> groups = {60, 40};
  const std::vector<float> group_weights = {1.0f, 2.0f};
  EXPECT_TRUE(XgbModel::Train(x.matrix(), y, groups, SmallParams(Objective::kRankPairwise), group_weights).ok());
  const std::vector<float> row_weights(x.rows, 0.5f);
  EXPECT_TRUE(XgbModel::Train(x.matrix(), y, {}, SmallParams(Objective::kRegression), row_weights).ok());

  auto bad = XgbModel::Train(x.matrix(), y, groups, SmallParams(Objective::kRankPairwise), row_weights);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  bad = XgbModel::Train(x.matrix(), y, {}, SmallParams(Objective::kRegression), group_weights);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<float> negative = {1.0f, -1.0f};
  bad = XgbModel::Train(x.matrix(), y, groups, SmallParams(Objective::kRankPairwise), negative);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(XgbModelTest, SaveLoadGivesIdenticalPredictions) {
  XgbModel model = SmallModel();
  auto bytes = model.Save();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->front(), '{');

  auto loaded = XgbModel::Load(*bytes, /*nthread=*/1);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->num_features(), model.num_features());

  Data test = RandomFeatures(1000, 5, 51);
  auto before = model.Predict(test.matrix());
  auto after = loaded->Predict(test.matrix());
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*before, *after);  // bitwise

  // And once more through the loaded model's own bytes.
  auto bytes2 = loaded->Save();
  ASSERT_TRUE(bytes2.ok()) << bytes2.status();
  auto reloaded = XgbModel::Load(*bytes2);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  auto again = reloaded->Predict(test.matrix());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*before, *again);
}

TEST(XgbModelTest, ConcurrentPredictMatchesSerial) {
  // Loaded with two OpenMP threads per Predict, so the calls below nest
  // parallel regions in four caller threads.
  auto bytes = SmallModel().Save();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto loaded = XgbModel::Load(*bytes, /*nthread=*/2);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const XgbModel& model = *loaded;
  Data test = RandomFeatures(2000, 5, 61);
  auto serial = model.Predict(test.matrix());
  ASSERT_TRUE(serial.ok()) << serial.status();

  constexpr int kThreads = 4;
  std::vector<std::vector<float>> results(kThreads);
  std::vector<absl::Status> statuses(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto pred = model.Predict(test.matrix());
        statuses[t] = pred.status();
        if (!pred.ok()) return;
        results[t] = std::move(pred).value();
        if (results[t] != *serial) return;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(statuses[t].ok()) << statuses[t];
    EXPECT_EQ(results[t], *serial) << "thread " << t;
  }
}

TEST(XgbModelTest, PredictZeroRowsIsEmpty) {
  XgbModel model = SmallModel();
  auto pred = model.Predict({{}, 0, 5});
  ASSERT_TRUE(pred.ok()) << pred.status();
  EXPECT_TRUE(pred->empty());
}

TEST(XgbModelTest, BadTrainingInputIsInvalidArgument) {
  Data x = RandomFeatures(10, 3, 71);
  std::vector<float> y(10, 1.0f);
  const XgbParams rank = SmallParams(Objective::kRankPairwise);
  auto expect_invalid = [](const absl::StatusOr<XgbModel>& m, const char* what) {
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << what << ": " << m.status();
  };
  expect_invalid(XgbModel::Train({{}, 0, 3}, {}, {}, rank), "zero rows");
  expect_invalid(XgbModel::Train({x.values, 10, 0}, y, {}, rank), "zero cols");
  expect_invalid(XgbModel::Train({x.values, 10, 4}, y, {}, rank), "values != rows*cols");
  expect_invalid(XgbModel::Train({x.values, 9, 3}, y, {}, rank), "values != rows*cols (fewer rows)");
  expect_invalid(XgbModel::Train(x.matrix(), std::vector<float>(9, 1.0f), {}, rank), "labels != rows");
  std::vector<float> nan_label = y;
  nan_label[3] = kNaN;
  expect_invalid(XgbModel::Train(x.matrix(), nan_label, {}, rank), "NaN label");
  std::vector<float> inf_label = y;
  inf_label[0] = std::numeric_limits<float>::infinity();
  expect_invalid(XgbModel::Train(x.matrix(), inf_label, {}, SmallParams(Objective::kRegression)), "inf label");
  const std::vector<unsigned> short_groups = {4, 5};
  expect_invalid(XgbModel::Train(x.matrix(), y, short_groups, rank), "groups sum < rows");
  const std::vector<unsigned> empty_group = {10, 0};
  expect_invalid(XgbModel::Train(x.matrix(), y, empty_group, rank), "empty group");
  XgbParams no_rounds = rank;
  no_rounds.rounds = 0;
  expect_invalid(XgbModel::Train(x.matrix(), y, {}, no_rounds), "rounds = 0");
  XgbParams bad_subsample = rank;
  bad_subsample.subsample = 1.5;
  expect_invalid(XgbModel::Train(x.matrix(), y, {}, bad_subsample), "subsample > 1");
  // An infinite feature value is rejected by XGBoost itself; the Status
  // carries its message and names the call.
  std::vector<float> inf_feature = x.values;
  inf_feature[5] = std::numeric_limits<float>::infinity();
  auto m = XgbModel::Train({inf_feature, 10, 3}, y, {}, rank);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("XGDMatrixCreateFromMat"));
  EXPECT_THAT(std::string(m.status().message()), ::testing::Not(HasSubstr("Stack trace")));
}

TEST(XgbModelTest, BadPredictInputIsInvalidArgument) {
  XgbModel model = SmallModel();
  const std::vector<float> four_cols(8, 0.5f);
  auto pred = model.Predict({four_cols, 2, 4});
  EXPECT_EQ(pred.status().code(), absl::StatusCode::kInvalidArgument) << pred.status();
  EXPECT_THAT(std::string(pred.status().message()), HasSubstr("expects 5"));
  const std::vector<float> short_values(9, 0.5f);
  pred = model.Predict({short_values, 2, 5});
  EXPECT_EQ(pred.status().code(), absl::StatusCode::kInvalidArgument) << pred.status();

  XgbModel moved = std::move(model);
  pred = model.Predict({four_cols, 0, 5});  // NOLINT(bugprone-use-after-move): checked on purpose
  EXPECT_EQ(pred.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(moved.Predict({{}, 0, 5}).ok());
}

TEST(XgbModelTest, LoadingGarbageIsAStatus) {
  XgbModel model = SmallModel();
  auto good = model.Save();
  ASSERT_TRUE(good.ok()) << good.status();

  std::vector<std::string> garbage = {
      "",
      "garbage bytes",
      "binf\x01\x02\x03\x04",
      std::string(200, '\0'),
      "{",
      "{}",
      "{\"learner\": 1}",
      "[1, 2, 3]",
      good->substr(0, good->size() / 2),  // truncated
  };
  std::mt19937 rng(81);
  for (int i = 0; i < 20; ++i) {
    std::string s(1 + rng() % 400, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    garbage.push_back(s);
  }
  for (int i = 0; i < 20; ++i) {  // a valid model with a few bytes flipped
    std::string s = *good;
    for (int k = 0; k < 4; ++k) s[1 + rng() % (s.size() - 1)] = static_cast<char>(rng());
    garbage.push_back(s);
  }
  for (size_t i = 0; i < garbage.size(); ++i) {
    auto loaded = XgbModel::Load(garbage[i]);
    if (i < 9) {
      EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << "case " << i << ": " << loaded.status();
    } else if (loaded.ok()) {
      // A flipped byte may land in a number: the model must still be usable.
      Data test = RandomFeatures(4, loaded->num_features(), 82);
      (void)loaded->Predict(test.matrix());
    }
  }
  EXPECT_FALSE(XgbModel::Load(*good, -1).ok());
}

// Not an assertion: the sizes the tuner uses after each batch. Training runs
// on one thread so the number means the same on a loaded machine.
TEST(XgbModelTest, TimingTrain5000x80Predict100000) {
  constexpr size_t kCols = 80;
  Data train = RandomFeatures(5000, kCols, 91);
  std::vector<float> labels(train.rows);
  for (size_t r = 0; r < train.rows; ++r) labels[r] = Throughput(train, r) + 0.1f * train.at(r, 7);
  const std::vector<unsigned> groups(50, 100);
  XgbParams params;  // the defaults: rank:pairwise, 60 rounds, depth 6
  params.nthread = 1;
  params.seed = 3;

  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  const auto t0 = Clock::now();
  auto model = XgbModel::Train(train.matrix(), labels, groups, params);
  const double train_ms = ms(Clock::now() - t0);
  ASSERT_TRUE(model.ok()) << model.status();
  std::printf("train 5000 x 80 (60 rounds, depth 6, 1 thread): %.1f ms\n", train_ms);

  auto bytes = model->Save();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto all_cores = XgbModel::Load(*bytes, /*nthread=*/0);
  ASSERT_TRUE(all_cores.ok()) << all_cores.status();

  Data candidates = RandomFeatures(100000, kCols, 92);
  for (const auto& [m, name] :
       {std::pair<const XgbModel*, const char*>{&*model, "1 thread"}, {&*all_cores, "all cores"}}) {
    const auto t1 = Clock::now();
    auto pred = m->Predict(candidates.matrix());
    const double predict_ms = ms(Clock::now() - t1);
    ASSERT_TRUE(pred.ok()) << pred.status();
    ASSERT_EQ(pred->size(), candidates.rows);
    std::printf("predict 100000 x 80 (%s of %u): %.1f ms (%.0f rows/s)\n", name, std::thread::hardware_concurrency(),
                predict_ms, static_cast<double>(candidates.rows) / predict_ms * 1000.0);
  }
}

}  // namespace
}  // namespace tunefarm::cost_model
