// Search strategies on replayed spaces. The spaces are recorded here with a
// synthetic but structured cost (a deterministic function of the knobs with
// hashed noise), written through the real tuning log and answered by the real
// replay device, so only the measurements themselves are made up.
#include <gtest/gtest.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/replay_eval.h"
#include "tunefarm/v1/tuning.pb.h"

namespace tunefarm::tuner {
namespace {

namespace fs = std::filesystem;
namespace v1 = tunefarm::v1;

const std::vector<std::pair<std::string, kernels::KnobValue>> kPins = {
    {"compiler", std::string("clang")}, {"cflags", std::string("-O3")}, {"order", std::string("jc,pc,ic")},
    {"inner", std::string("jr,ir")},    {"nc", int64_t{1024}},          {"mc", int64_t{96}},
    {"unroll_k", int64_t{4}},           {"pack_a", int64_t{1}},          {"threads", int64_t{1}},
    {"parallel", std::string("rows")}};

// GFLOP/s of a config: best with wide vectors, ~12-24 accumulators, packed
// B and a mid-sized K block; `shift` moves the optimum a little per shape.
double SyntheticGflops(const kernels::ConfigSpace& s, const kernels::Config& c, int shift) {
  double vec = static_cast<double>(s.IntValue(c, "vec"));
  double regs = static_cast<double>(s.IntValue(c, "mr") * s.IntValue(c, "nv"));
  double kc = std::log2(static_cast<double>(s.IntValue(c, "kc")));
  double g = 100 * std::sqrt(vec / 16) * std::exp(-std::pow((regs - 16 - shift) / 8, 2)) *
             (s.IntValue(c, "pack_b") ? 1.0 : 0.75) * (1 - 0.08 * std::abs(kc - 8 - shift / 4.0));
  uint64_t h = c.index * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  return std::max(0.5, g * (1 + 0.04 * (static_cast<double>(h % 1000) / 1000 - 0.5)));
}

class SearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("tunefarm-search-test-" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  // Records every config of the pinned space of `text` into a new log.
  static std::string Record(const std::string& text, int shift) {
    static int files = 0;
    std::string path = (*dir_ / ("space" + std::to_string(++files) + ".db")).string();
    auto db = database::Database::Open(path);
    EXPECT_TRUE(db.ok());
    v1::Target target;
    target.set_kind(v1::DEVICE_KIND_CPU);
    target.set_device_key("rec-cpu");
    target.set_model("synthetic");
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(target, &json);
    EXPECT_TRUE((*db)->UpsertDevice({"rec-cpu", "cpu", "", "synthetic", json, 0}).ok());
    kernels::Workload w = *kernels::ParseWorkload(text);
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find("matmul");
    kernels::ConfigSpace full = *t.Space(w), pinned = *full.Pin(kPins);
    std::string version = *kernels::TemplateVersion(t, w);
    std::vector<database::RecordRow> rows;
    for (uint64_t i = 0; i < pinned.size(); ++i) {
      database::RecordRow r;
      r.workload_key = w.Key();
      r.device_key = "rec-cpu";
      r.target_json = json;
      r.template_name = "matmul";
      r.template_version = version;
      r.config_index = pinned.ToParentIndex(i);
      r.config_json = full.ToJson(full.FromIndex(r.config_index));
      r.costs = {t.Flops(w) / (SyntheticGflops(pinned, pinned.FromIndex(i), shift) * 1e9)};
      rows.push_back(std::move(r));
    }
    EXPECT_EQ(*(*db)->AddRecords(rows), static_cast<int>(pinned.size()));
    return path;
  }

  static std::vector<ReplayRun> Runs(const RecordedSpace& s, const std::string& strategy,
                                     const std::vector<database::Record>& transfer = {},
                                     const std::string& objective = "reg") {
    std::vector<ReplayRun> out;
    for (uint64_t seed = 0; seed < 10; ++seed) {
      ReplayRunOptions o;
      o.strategy = strategy;
      o.seed = seed;
      o.max_trials = 400;
      o.transfer = transfer;
      o.objective = objective;
      auto r = RunOnRecordedSpace(s, o);
      EXPECT_TRUE(r.ok()) << r.status();
      out.push_back(r.ok() ? *r : ReplayRun{});
    }
    return out;
  }
  static double MeanTrialsTo95(const std::vector<ReplayRun>& runs) {
    double sum = 0;
    for (const ReplayRun& r : runs) sum += r.trials_to_95 < 0 ? 401 : r.trials_to_95;
    return sum / static_cast<double>(runs.size());
  }

  static fs::path* dir_;
};
fs::path* SearchTest::dir_ = nullptr;

TEST_F(SearchTest, ReplayedSpaceIsCompleteAndBestIsKnown) {
  std::string path = Record("matmul(M=128,N=128,K=128)", 0);
  auto s = LoadRecordedSpace(path, *kernels::ParseWorkload("matmul(M=128,N=128,K=128)"), kPins);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->size, 4224u);
  EXPECT_EQ(s->recorded, 4224);
  EXPECT_GT(s->best_throughput, 90e9);
}

// Averaged over ten seeds, the model-guided search reaches 95% of the best
// known config in well under half of random search's trials.
TEST_F(SearchTest, XgbBeatsRandomOverSeeds) {
  const std::string w = "matmul(M=192,N=256,K=96)";
  auto s = LoadRecordedSpace(Record(w, 4), *kernels::ParseWorkload(w), kPins);
  ASSERT_TRUE(s.ok()) << s.status();
  std::vector<ReplayRun> xgb = Runs(*s, "xgb"), random = Runs(*s, "random");
  double mx = MeanTrialsTo95(xgb), mr = MeanTrialsTo95(random);
  std::printf("mean trials to 95%%: xgb %.1f, random %.1f\n", mx, mr);
  EXPECT_LT(mx, 0.5 * mr);
  for (const ReplayRun& r : xgb) EXPECT_GE(r.trials_to_95, 1) << "every xgb run gets there";
}

// The pairwise-ranking objective also steers the search well past random.
TEST_F(SearchTest, RankingObjectiveAlsoBeatsRandom) {
  const std::string w = "matmul(M=192,N=256,K=96)";
  auto s = LoadRecordedSpace(Record(w, 4), *kernels::ParseWorkload(w), kPins);
  ASSERT_TRUE(s.ok()) << s.status();
  double rank = MeanTrialsTo95(Runs(*s, "xgb", {}, "rank")), random = MeanTrialsTo95(Runs(*s, "random"));
  std::printf("mean trials to 95%%: xgb (ranking) %.1f, random %.1f\n", rank, random);
  EXPECT_LT(rank, 0.5 * random);
}

// Records of another shape warm-start the model: fewer trials than cold.
TEST_F(SearchTest, TransferFromAnotherShapeHelps) {
  const std::string a = "matmul(M=128,N=128,K=128)", b = "matmul(M=77,N=129,K=61)";
  std::string pa = Record(a, 0);
  auto sb = LoadRecordedSpace(Record(b, 2), *kernels::ParseWorkload(b), kPins);
  ASSERT_TRUE(sb.ok()) << sb.status();
  auto db = database::Database::Open(pa);
  auto transfer = (*db)->TemplateRecords("matmul", "rec-cpu", b, 5000);
  ASSERT_TRUE(transfer.ok());
  ASSERT_EQ(transfer->size(), 4224u);
  std::vector<ReplayRun> warm = Runs(*sb, "xgb", *transfer), cold = Runs(*sb, "xgb");
  double mw = MeanTrialsTo95(warm), mc = MeanTrialsTo95(cold);
  std::printf("mean trials to 95%%: with transfer %.1f, without %.1f\n", mw, mc);
  EXPECT_LT(mw, mc);
}

}  // namespace
}  // namespace tunefarm::tuner
