#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include <fcntl.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <algorithm>

#include "nlohmann/json.hpp"
#include "tunefarm/device_agents/process.h"

namespace {

namespace fs = std::filesystem;
using tunefarm::device_agents::ProcessResult;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tunefarm-e2e-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "log.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  ProcessResult Run(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), TUNEFARM_BIN);
    tunefarm::device_agents::ProcessOptions o;
    o.timeout = std::chrono::milliseconds(300000);
    o.working_dir = dir_.string();
    // Keep the user's real data directory out of tests.
    env.push_back("XDG_DATA_HOME=" + (dir_ / "xdg").string());
    env.push_back("TUNEFARM_DB=");
    o.extra_env = env;
    auto r = tunefarm::device_agents::NewPosixProcessLauncher()->Run(args, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }

  fs::path dir_;
  std::string db_;
};

TEST_F(CliTest, TuneThenBest) {
  const std::string w = "matmul(M=96,N=80,K=72)";
  ProcessResult tune = Run({"tune", w, "--trials", "12", "--batch-size", "6", "--db", db_, "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err << tune.out;
  nlohmann::json j = nlohmann::json::parse(tune.out);  // stdout is one JSON document
  EXPECT_EQ(j["workload"], "matmul(M=96,N=80,K=72,dtype=float32)");
  EXPECT_EQ(j["trials"], 12);
  ASSERT_TRUE(j["best"].is_object());
  EXPECT_GT(j["best"]["gflops"].get<double>(), 0.0);
  EXPECT_TRUE(j["default"].contains("seconds")) << j.dump();
  EXPECT_GE(j["speedup_over_default"].get<double>(), 1.0);
  const std::string key = j["device_key"];

  ProcessResult best = Run({"best", w, "--device", key, "--db", db_, "--json", "--top", "3"});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  nlohmann::json b = nlohmann::json::parse(best.out);
  ASSERT_GE(b["records"].size(), 1u);
  EXPECT_EQ(b["records"][0]["record_id"], j["best"]["record_id"]);
  EXPECT_DOUBLE_EQ(b["records"][0]["seconds"].get<double>(), j["best"]["seconds"].get<double>());
  for (size_t i = 1; i < b["records"].size(); ++i) {
    EXPECT_LE(b["records"][i - 1]["seconds"].get<double>(), b["records"][i]["seconds"].get<double>());
  }

  // A second run continues: 12 more, none repeated (the log has 24).
  ProcessResult again = Run({"tune", w, "--trials", "12", "--db", db_, "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  ProcessResult all = Run({"best", w, "--db", db_, "--json", "--top", "1000"});
  nlohmann::json a = nlohmann::json::parse(all.out);
  std::set<uint64_t> configs;
  for (const auto& r : a["records"]) EXPECT_TRUE(configs.insert(r["config_index"].get<uint64_t>()).second);

  // Human output.
  ProcessResult table = Run({"best", w, "--db", db_});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("GFLOP/s"), std::string::npos);
}

TEST_F(CliTest, DefaultDatabaseFollowsEnvironment) {
  const std::string env_db = (dir_ / "from-env.db").string();
  ProcessResult tune = Run({"tune", "matmul(M=8,N=8,K=8)", "--trials", "2", "--json"}, {"TUNEFARM_DB=" + env_db});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  EXPECT_TRUE(fs::exists(env_db));
  // Without TUNEFARM_DB: $XDG_DATA_HOME/tunefarm/tunefarm.db.
  ProcessResult xdg = Run({"tune", "matmul(M=8,N=8,K=8)", "--trials", "2", "--json"});
  ASSERT_EQ(xdg.exit_code, 0) << xdg.err;
  EXPECT_TRUE(fs::exists(dir_ / "xdg" / "tunefarm" / "tunefarm.db"));
}

// Ctrl-C finishes the batch in flight, keeps every finished trial in the log
// and marks the run interrupted; the next run continues from there.
TEST_F(CliTest, InterruptKeepsFinishedTrials) {
  const std::string w = "matmul(M=200,N=200,K=200)";
  const std::string out = (dir_ / "out.json").string();
  std::vector<std::string> args = {TUNEFARM_BIN, "tune", w, "--trials", "2000", "--batch-size", "4",
                                   "--db", db_, "--json"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, TUNEFARM_BIN, &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "tunefarm died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::ifstream in(out);
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_TRUE(j["interrupted"].get<bool>());
  const int trials = j["trials"];
  EXPECT_GT(trials, 0);
  EXPECT_LT(trials, 2000);
  EXPECT_EQ(trials % 4, 0) << "a batch was cut short";
  ProcessResult all = Run({"best", w, "--db", db_, "--json", "--top", "1000"});
  nlohmann::json a = nlohmann::json::parse(all.out);
  EXPECT_EQ(static_cast<int>(a["records"].size()) + j["errors"].get<int>(), trials);
}

// record measures a whole (pinned) space; tune on replay: answers from it,
// labelled replay, and `best` for any device never reports replay records.
TEST_F(CliTest, RecordThenReplay) {
  const std::string w = "matmul(M=24,N=40,K=16)";
  const std::string recorded = (dir_ / "recorded.db").string(), replayed = (dir_ / "replayed.db").string();
  std::vector<std::string> pins = {"--pin", "nv=1", "--pin", "vec=8", "--pin", "mc=32", "--pin", "nc=64",
                                   "--pin", "kc=16", "--pin", "order=jc,pc,ic", "--pin", "inner=jr,ir",
                                   "--pin", "pack_a=0", "--pin", "pack_b=1", "--pin", "unroll_k=2",
                                   "--pin", "compiler=gcc", "--pin", "cflags=-O2", "--pin", "threads=1",
                                   "--pin", "parallel=rows"};
  std::vector<std::string> record = {"record", w, "--samples", "100", "--db", recorded, "--json"};
  record.insert(record.end(), pins.begin(), pins.end());
  ProcessResult r = Run(record);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json rj = nlohmann::json::parse(r.out);
  EXPECT_EQ(rj["space_size"], 11);  // only mr is free
  EXPECT_EQ(rj["trials"], 11);
  const std::string key = rj["device_key"];

  std::vector<std::string> tune = {"tune", w, "--device", "replay:" + recorded, "--trials", "11", "--db", replayed,
                                   "--json", "--strategy", "random"};
  tune.insert(tune.end(), pins.begin(), pins.end());
  ProcessResult t = Run(tune);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  nlohmann::json tj = nlohmann::json::parse(t.out);
  EXPECT_EQ(tj["device_key"], "replay-" + key);
  EXPECT_EQ(tj["trials"], 11);
  EXPECT_EQ(tj["errors"], 0);
  ProcessResult rb = Run({"best", w, "--db", recorded, "--json"});
  nlohmann::json rbj = nlohmann::json::parse(rb.out);
  EXPECT_DOUBLE_EQ(tj["best"]["seconds"].get<double>(), rbj["records"][0]["seconds"].get<double>())
      << "replay answers with the recorded costs";

  ProcessResult any = Run({"best", w, "--db", replayed, "--json"});
  EXPECT_EQ(any.exit_code, 1);
  EXPECT_TRUE(nlohmann::json::parse(any.out)["records"].empty()) << "replay records are not a real device's best";
  ProcessResult explicit_key = Run({"best", w, "--db", replayed, "--device", "replay-" + key, "--json"});
  EXPECT_EQ(explicit_key.exit_code, 0);

  // Outside the recorded sub-space the replay device has no answer.
  ProcessResult unrecorded = Run({"tune", w, "--device", "replay:" + recorded, "--trials", "3", "--db",
                                  (dir_ / "fresh.db").string(), "--strategy", "random", "--json"});
  ASSERT_EQ(unrecorded.exit_code, 1) << unrecorded.err;
  EXPECT_EQ(nlohmann::json::parse(unrecorded.out)["errors"], 3);
}

TEST_F(CliTest, BadInputGivesOneLineErrors) {
  for (const char* w : {"matmul(M=0,N=1,K=1)", "matmul(M=1,N=1)", "gemm(M=1,N=1,K=1)", "matmul(M=1,N=1,K=1",
                        "matmul(M=9999999999,N=1,K=1)"}) {
    ProcessResult r = Run({"tune", w, "--db", db_, "--trials", "1"});
    EXPECT_EQ(r.exit_code, 2) << w << ": " << r.err;
    EXPECT_EQ(r.signal, 0);
    EXPECT_NE(r.err.find("tunefarm: "), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty());
  }
  ProcessResult missing = Run({"best", "matmul(M=2,N=2,K=2)", "--db", (dir_ / "none.db").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no tuning log"), std::string::npos) << missing.err;
  ProcessResult strategy = Run({"tune", "matmul(M=2,N=2,K=2)", "--strategy", "magic"});
  EXPECT_EQ(strategy.exit_code, 2);
  ProcessResult device = Run({"tune", "matmul(M=2,N=2,K=2)", "--device", "fpga9", "--db", db_});
  EXPECT_EQ(device.exit_code, 2);
  EXPECT_NE(device.err.find("unknown device class 'fpga9'"), std::string::npos) << device.err;
  ProcessResult help = Run({"tune", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--trials"), std::string::npos);
}

// Export then import into a fresh log: every record comes back with every
// field (ids and job ids are the new log's own); a second import adds none.
TEST_F(CliTest, ExportImportRoundTripKeepsEveryRecord) {
  ProcessResult tune = Run({"tune", "matmul(M=9,N=17,K=5)", "--trials", "6", "--batch-size", "6", "--db", db_});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  const std::string out = (dir_ / "records.jsonl").string(), copy = (dir_ / "copy.db").string();
  ASSERT_EQ(Run({"export", "--db", db_, "-o", out}).exit_code, 0);
  ProcessResult imported = Run({"import", out, "--db", copy});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_NE(imported.err.find("imported 6 records (0 already present"), std::string::npos) << imported.err;
  ProcessResult again = Run({"import", out, "--db", copy});
  EXPECT_NE(again.err.find("imported 0 records (6 already present"), std::string::npos) << again.err;

  auto records = [&](const std::string& db) {
    ProcessResult e = Run({"export", "--db", db});
    EXPECT_EQ(e.exit_code, 0) << e.err;
    std::vector<nlohmann::json> v;
    std::istringstream in(e.out);
    for (std::string line; std::getline(in, line);) {
      nlohmann::json j = nlohmann::json::parse(line);
      j.erase("id");
      j.erase("job_id");
      v.push_back(j);
    }
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.dump() < b.dump(); });
    return v;
  };
  const std::vector<nlohmann::json> a = records(db_), b = records(copy);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(a[0].contains("target_json") && a[0].contains("toolchain") && a[0].contains("agent_id"));
}

// A file with bad lines: each is reported by number and the rest imported;
// with --atomic nothing is.
TEST_F(CliTest, ImportReportsMalformedLinesByNumber) {
  ProcessResult tune = Run({"tune", "matmul(M=3,N=5,K=7)", "--trials", "3", "--batch-size", "3", "--db", db_});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  ProcessResult e = Run({"export", "--db", db_});
  std::istringstream in(e.out);
  std::vector<std::string> good;
  for (std::string line; std::getline(in, line);) good.push_back(line);
  ASSERT_EQ(good.size(), 3u);
  nlohmann::json no_workload = nlohmann::json::parse(good[1]);
  no_workload.erase("workload");
  nlohmann::json bad_config = nlohmann::json::parse(good[2]);
  bad_config["workload"] = "matmul(M=3,N=5)";
  const std::string file = (dir_ / "mixed.jsonl").string();
  std::ofstream(file) << good[0] << "\n{not json\n" << no_workload.dump() << "\n\n" << bad_config.dump() << "\n"
                      << good[1] << "\n";
  const std::string fresh = (dir_ / "fresh.db").string(), atomic = (dir_ / "atomic.db").string();

  ProcessResult strict = Run({"import", file, "--atomic", "--db", atomic});
  EXPECT_EQ(strict.exit_code, 1);
  EXPECT_NE(strict.err.find("line 2:"), std::string::npos) << strict.err;
  EXPECT_NE(strict.err.find("nothing imported"), std::string::npos) << strict.err;
  ProcessResult count = Run({"export", "--db", atomic});
  EXPECT_EQ(count.out, "");

  ProcessResult partial = Run({"import", file, "--db", fresh});
  EXPECT_EQ(partial.exit_code, 1);
  EXPECT_NE(partial.err.find("line 2:"), std::string::npos) << partial.err;
  EXPECT_NE(partial.err.find("line 3:"), std::string::npos) << partial.err;
  EXPECT_NE(partial.err.find("line 5:"), std::string::npos) << partial.err;
  EXPECT_EQ(partial.err.find("line 1:"), std::string::npos) << partial.err;
  EXPECT_EQ(partial.err.find("line 6:"), std::string::npos) << partial.err;
  EXPECT_NE(partial.err.find("imported 2 records"), std::string::npos) << partial.err;
}

// `export --format library` end to end: the table, --strict, bad input.
TEST_F(CliTest, ExportLibrary) {
  ASSERT_EQ(Run({"tune", "matmul(M=8,N=8,K=8)", "--trials", "3", "--batch-size", "3", "--db", db_}).exit_code, 0);
  ProcessResult target = Run({"target", "--json"});
  const std::string key = nlohmann::json::parse(target.out)["device_key"];
  const std::string list = (dir_ / "workloads.txt").string();
  std::ofstream(list) << "# tuned\nmatmul(M=8,N=8,K=8)\n\nmatmul(M=5,N=3,K=2)  # never tuned\n";
  const std::string out = (dir_ / "lib").string();
  ProcessResult lib = Run({"export", "--format", "library", "--device", key, "--workloads", list, "-o", out, "--db", db_});
  ASSERT_EQ(lib.exit_code, 0) << lib.err;
  EXPECT_NE(lib.out.find("matmul(M=8,N=8,K=8,dtype=float32)  exact device"), std::string::npos) << lib.out;
  EXPECT_NE(lib.out.find("matmul(M=5,N=3,K=2,dtype=float32)  template default"), std::string::npos) << lib.out;
  for (const char* f : {"tunefarm_kernels.h", "tunefarm_dispatch.c", "kernel_0.c", "kernel_1.c", "kernel_1.flags"}) {
    EXPECT_TRUE(fs::exists(dir_ / "lib" / f)) << f;
  }
  ProcessResult strict =
      Run({"export", "--format", "library", "--device", key, "--workloads", list, "-o", out, "--db", db_, "--strict"});
  EXPECT_EQ(strict.exit_code, 1);
  EXPECT_NE(strict.err.find("1 workload(s) were not tuned"), std::string::npos) << strict.err;
  ProcessResult no_device = Run({"export", "--format", "library", "--workloads", list, "-o", out, "--db", db_});
  EXPECT_EQ(no_device.exit_code, 2);
  EXPECT_NE(no_device.err.find("--device"), std::string::npos) << no_device.err;
  std::ofstream(list) << "matmul(M=8,N=8)\n";
  ProcessResult bad = Run({"export", "--format", "library", "--device", key, "--workloads", list, "-o", out, "--db", db_});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("missing parameter K"), std::string::npos) << bad.err;
}

}  // namespace
