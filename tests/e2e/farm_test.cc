// The measurement farm as its users run it: a real `tunefarm serve`, real
// `tunefarm agent` processes measuring on this CPU, talking gRPC on loopback,
// and the CLI against them. Every wait is bounded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "nlohmann/json.hpp"
#include "tunefarm/tuner/client.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/process.h"
#include "tunefarm/v1/agent.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using tunefarm::device_agents::ProcessResult;

// A background process with its output in a file.
class Daemon {
 public:
  Daemon(std::vector<std::string> args, const fs::path& log) : log_(log) {
    args.insert(args.begin(), TUNEFARM_BIN);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    EXPECT_EQ(posix_spawn(&pid_, TUNEFARM_BIN, &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Daemon() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void Kill(int sig) { kill(pid_, sig); }
  // Exit status after waiting up to `timeout`; -1 if still running (then killed).
  int Wait(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = 0;
  fs::path log_;
};

template <typename F>
bool WaitFor(F done, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return done();
}

class FarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tunefarm-farm-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "farm.db").string();
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Starts a server and returns its address; listen "127.0.0.1:0" picks a port.
  std::string Serve(std::vector<std::string> extra = {}, const std::string& listen = "127.0.0.1:0") {
    std::vector<std::string> args = {"serve", "--listen", listen, "--db", db_, "--heartbeat-ms", "500", "-v"};
    args.insert(args.end(), extra.begin(), extra.end());
    const fs::path log = dir_ / ("serve" + std::to_string(servers_.size()) + ".log");
    servers_.push_back(std::make_unique<Daemon>(args, log));
    Daemon& d = *servers_.back();
    std::smatch m;
    std::string text;
    const std::regex re("serving on port ([0-9]+)");
    EXPECT_TRUE(WaitFor([&] { text = d.Log(); return std::regex_search(text, m, re); }, 20s)) << text;
    return "127.0.0.1:" + m[1].str();
  }

  Daemon& Agent(const std::string& server, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"agent", "--server", server, "--key", "e2e-cpu", "--workers", "1", "-v"};
    args.insert(args.end(), extra.begin(), extra.end());
    agents_.push_back(std::make_unique<Daemon>(args, dir_ / ("agent" + std::to_string(agents_.size()) + ".log")));
    return *agents_.back();
  }

  ProcessResult Cli(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) {
    args.insert(args.begin(), TUNEFARM_BIN);
    tunefarm::device_agents::ProcessOptions o;
    o.timeout = timeout;
    o.working_dir = dir_.string();
    o.extra_env = {"TUNEFARM_SERVER=", "TUNEFARM_TOKEN_FILE="};
    auto r = tunefarm::device_agents::NewPosixProcessLauncher()->Run(args, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }

  nlohmann::json Json(std::vector<std::string> args) {
    args.push_back("--json");
    ProcessResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  int TotalAgents(const std::string& server) {
    nlohmann::json d = Json({"devices", "--server", server});
    int n = 0;
    for (const auto& q : d["devices"]) n += q["total"].get<int>();
    return n;
  }

  int64_t Submit(const std::string& server, const nlohmann::json& spec) {
    const fs::path f = dir_ / "spec.json";
    std::ofstream(f) << spec.dump();
    nlohmann::json j = Json({"submit", f.string(), "--server", server});
    return std::stoll(j["id"].get<std::string>());  // int64 is a string in proto JSON
  }

  int TrialsDone(const std::string& server, int64_t job) {
    ProcessResult r = Cli({"jobs", "--all", "--json", "--server", server});
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_object()) return -1;
    for (const auto& x : j["jobs"]) {
      if (std::stoll(x["id"].get<std::string>()) == job) return x["trials_done"].get<int>();
    }
    return -1;
  }

  // Records per workload in the log, each checked to be one per config.
  std::map<std::string, int> RecordsPerWorkload(int64_t job) {
    tunefarm::database::OpenOptions o;
    o.read_only = true;
    auto db = tunefarm::database::Database::Open(db_, o);
    EXPECT_TRUE(db.ok()) << db.status();
    std::map<std::string, int> out;
    if (!db.ok()) return out;
    auto counts = (*db)->JobRecordCounts(job);
    EXPECT_TRUE(counts.ok());
    for (const auto& c : *counts) out[c.workload_key] = static_cast<int>(c.records);
    return out;
  }

  static nlohmann::json TwoTaskSpec(int trials) {
    return {{"name", "e2e"},
            {"device_key", "e2e-cpu"},
            {"workloads", {"matmul(M=48,N=40,K=32)", "matmul(M=33,N=17,K=29)"}},
            {"trials_per_task", trials},
            {"strategy", "random"},
            {"batch_size", 4},
            {"measure", {{"min_repeat_ms", 2}, {"repeat", 2}}}};
  }

  fs::path dir_;
  std::string db_;
  std::vector<std::unique_ptr<Daemon>> servers_;
  std::vector<std::unique_ptr<Daemon>> agents_;
};

TEST_F(FarmTest, TwoAgentsFinishATwoTaskJobWhenOneIsKilledMidBatch) {
  const std::string server = Serve();
  Daemon& a = Agent(server);
  Agent(server);
  ASSERT_TRUE(WaitFor([&] { return TotalAgents(server) == 2; }, 30s));
  nlohmann::json devices = Json({"devices", "--server", server});
  ASSERT_EQ(devices["devices"].size(), 1u);
  EXPECT_EQ(devices["devices"][0]["device_key"], "e2e-cpu");

  const int64_t job = Submit(server, TwoTaskSpec(24));
  ASSERT_TRUE(WaitFor([&] { return TrialsDone(server, job) >= 6; }, 60s));
  a.Kill(SIGKILL);  // both agents are busy: it dies holding a lease
  ASSERT_EQ(a.Wait(5s), 128 + SIGKILL);

  ProcessResult watch = Cli({"watch", std::to_string(job), "--server", server, "--json"}, 180s);
  ASSERT_EQ(watch.exit_code, 0) << watch.err << watch.out;
  nlohmann::json final = nlohmann::json::parse(watch.out);
  EXPECT_EQ(final["state"], "JOB_STATE_DONE");
  EXPECT_EQ(final["trials_done"], 48);
  std::map<std::string, int> records = RecordsPerWorkload(job);
  EXPECT_EQ(records["matmul(M=48,N=40,K=32,dtype=float32)"], 24);
  EXPECT_EQ(records["matmul(M=33,N=17,K=29,dtype=float32)"], 24);
  EXPECT_NE(servers_[0]->Log().find("returned to the queue"), std::string::npos) << servers_[0]->Log();

  // The CLI against the live server.
  ProcessResult best = Cli({"best", "matmul(M=48,N=40,K=32)", "--device", "e2e-cpu", "--server", server});
  EXPECT_EQ(best.exit_code, 0) << best.err;
  EXPECT_NE(best.out.find("GFLOP/s"), std::string::npos);
  ProcessResult jobs = Cli({"jobs", "--all", "--server", server});
  EXPECT_NE(jobs.out.find("done"), std::string::npos) << jobs.out;
  ProcessResult table = Cli({"devices", "--server", server});
  EXPECT_NE(table.out.find("e2e-cpu"), std::string::npos) << table.out;

  // Records travel as JSON lines: out of the server, into another log, and
  // back into the server, where every one is already present.
  const std::string jsonl = (dir_ / "records.jsonl").string();
  ProcessResult exported = Cli({"export", "--server", server, "-o", jsonl});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_NE(exported.err.find("exported 48 records"), std::string::npos) << exported.err;
  const std::string other = (dir_ / "other.db").string();
  ProcessResult imported = Cli({"import", jsonl, "--db", other});
  EXPECT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_NE(imported.err.find("imported 48 records"), std::string::npos) << imported.err;
  ProcessResult back = Cli({"import", jsonl, "--server", server});
  EXPECT_EQ(back.exit_code, 0) << back.err;
  EXPECT_NE(back.err.find("imported 0 records (48 already present"), std::string::npos) << back.err;
  ProcessResult local_best = Cli({"best", "matmul(M=48,N=40,K=32)", "--device", "e2e-cpu", "--db", other, "--json"});
  ProcessResult remote_best = Cli({"best", "matmul(M=48,N=40,K=32)", "--device", "e2e-cpu", "--server", server, "--json"});
  auto lb = nlohmann::json::parse(local_best.out, nullptr, false);
  auto rb = nlohmann::json::parse(remote_best.out, nullptr, false);
  ASSERT_TRUE(lb.is_object() && rb.is_object()) << local_best.out << remote_best.out;
  EXPECT_DOUBLE_EQ(lb["records"][0]["seconds"].get<double>(), rb["records"][0]["min_cost"].get<double>());
}

TEST_F(FarmTest, KilledServerRestartsAndTheJobResumesWithoutLossOrDuplicates) {
  const std::string server = Serve();
  Agent(server);
  const int64_t job = Submit(server, TwoTaskSpec(16));
  ASSERT_TRUE(WaitFor([&] { return TrialsDone(server, job) >= 6; }, 90s));
  servers_[0]->Kill(SIGKILL);
  ASSERT_EQ(servers_[0]->Wait(5s), 128 + SIGKILL);
  // Same address: the agent reconnects on its own.
  const std::string again = Serve({}, server);
  ASSERT_EQ(again, server);
  ProcessResult watch = Cli({"watch", std::to_string(job), "--server", server, "--json"}, 180s);
  ASSERT_EQ(watch.exit_code, 0) << watch.err << watch.out << servers_[1]->Log();
  nlohmann::json final = nlohmann::json::parse(watch.out);
  EXPECT_EQ(final["state"], "JOB_STATE_DONE");
  std::map<std::string, int> records = RecordsPerWorkload(job);
  EXPECT_EQ(records["matmul(M=48,N=40,K=32,dtype=float32)"], 16);
  EXPECT_EQ(records["matmul(M=33,N=17,K=29,dtype=float32)"], 16);
  EXPECT_NE(servers_[1]->Log().find("resuming job"), std::string::npos);
}

TEST_F(FarmTest, WrongTokenAndOtherTemplatesAreRefusedAndOthersKeepWorking) {
  const fs::path token = dir_ / "token";
  std::ofstream(token) << "s3cret\n";
  const fs::path wrong = dir_ / "wrong";
  std::ofstream(wrong) << "guess\n";
  const std::string server = Serve({"--token-file", token.string()});

  Daemon& bad = Agent(server, {"--token-file", wrong.string()});
  EXPECT_EQ(bad.Wait(30s), 1);
  EXPECT_NE(bad.Log().find("token"), std::string::npos) << bad.Log();
  Agent(server, {"--token-file", token.string()});

  // An agent built from other templates: a raw client with another hash.
  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto stub = tunefarm::v1::AgentService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  auto stream = stub->Attach(&ctx);
  tunefarm::v1::AgentMessage hello;
  hello.mutable_hello()->mutable_target()->set_device_key("e2e-cpu");
  hello.mutable_hello()->set_token("s3cret");
  hello.mutable_hello()->set_template_hash("0000000000000000");
  auto* t = hello.mutable_hello()->add_templates();
  t->set_name("matmul");
  t->set_declared_version("0-old");
  ASSERT_TRUE(stream->Write(hello));
  tunefarm::v1::ServerMessage m;
  EXPECT_FALSE(stream->Read(&m));
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("templates"), std::string::npos) << s.error_message();

  // Clients need the token too; the good agent is still attached.
  ProcessResult anonymous = Cli({"devices", "--server", server});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_NE(anonymous.err.find("token"), std::string::npos) << anonymous.err;
  ASSERT_TRUE(WaitFor(
      [&] {
        ProcessResult r = Cli({"devices", "--server", server, "--token-file", token.string(), "--json"});
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        return j.is_object() && j["devices"].size() == 1 && j["devices"][0]["total"] == 1;
      },
      30s));
}

// TLS with a self-signed certificate: agents and clients that trust it get
// in, a plaintext client does not.
TEST_F(FarmTest, ServesTls) {
  const fs::path key = dir_ / "key.pem", cert = dir_ / "cert.pem";
  const std::string openssl = tunefarm::device_agents::FindExecutable("openssl");
  if (openssl.empty()) GTEST_SKIP() << "openssl is not installed";
  tunefarm::device_agents::ProcessOptions o;
  o.timeout = 60s;
  auto made = tunefarm::device_agents::NewPosixProcessLauncher()->Run(
      {openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key.string(), "-out", cert.string(), "-days",
       "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"},
      o);
  ASSERT_TRUE(made.ok() && made->exit_code == 0) << (made.ok() ? made->err : made.status().ToString());
  const std::string server = Serve({"--tls-cert", cert.string(), "--tls-key", key.string()});
  Agent(server, {"--tls-ca", cert.string()});
  ASSERT_TRUE(WaitFor(
      [&] {
        ProcessResult r = Cli({"devices", "--server", server, "--tls-ca", cert.string(), "--json"});
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        return j.is_object() && j["devices"].size() == 1 && j["devices"][0]["total"] == 1;
      },
      30s));
  ProcessResult plain = Cli({"devices", "--server", server}, 20s);
  EXPECT_NE(plain.exit_code, 0);
}

TEST_F(FarmTest, MalformedSpecsAreRejectedNamingTheField) {
  const std::string server = Serve();
  auto submit = [&](const std::string& text) {
    const fs::path f = dir_ / "bad.json";
    std::ofstream(f) << text;
    return Cli({"submit", f.string(), "--server", server});
  };
  struct Case {
    std::string spec, expect;
  };
  const std::vector<Case> cases = {
      {R"j({"device_key":"k","workloads":["matmul(M=8,N=8,K=8)","matmul(M=0,N=8,K=8)"],"trials_per_task":4})j",
       "workloads[1]"},
      {R"j({"device_key":"k","workloads":["conv9(M=8)"],"trials_per_task":4})j", "workloads[0]"},
      {R"j({"device_key":"k","workloads":["matmul(M=8,N=8,K=8)"]})j", "trials_per_task"},
      {R"j({"device_key":"k","workloads":["matmul(M=8,N=8,K=8)"],"trials_per_task":4,"batch_size":100000})j",
       "batch_size"},
      {R"j({"device_key":"bad key!","workloads":["matmul(M=8,N=8,K=8)"],"trials_per_task":4})j", "device_key"},
      {R"j({"device_key":"k","workloads":[],"trials_per_task":4})j", "workloads"},
      {R"j({"device_key":"k","workloads":["matmul(M=8,N=8,K=8)"],"trials_per_task":4,"strategy":"magic"})j",
       "strategy"},
      {R"j({"device_key":"k","workloads":["matmul(M=8,N=8,K=8)"],"trials_per_task":4,"measure":{"repeat":-1}})j",
       "measure.repeat"},
      {R"j({"device_key":"k","workload":["matmul(M=8,N=8,K=8)"]})j", "workload"},
      {R"j({"device_key":)j", "not a valid job spec"},
  };
  for (const Case& c : cases) {
    ProcessResult r = submit(c.spec);
    EXPECT_EQ(r.exit_code, 2) << c.spec << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.spec << "\n" << r.err;
  }
  ProcessResult devices = Cli({"devices", "--server", server});
  EXPECT_EQ(devices.exit_code, 0) << devices.err;  // still serving

  // Standard gRPC health checking answers SERVING (HealthCheckResponse is
  // field 1 = 1, two bytes on the wire).
  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::CompletionQueue cq;
  grpc::Slice empty(std::string{});  // HealthCheckRequest{service: ""}
  grpc::ByteBuffer request(&empty, 1), response;
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
  cq.Shutdown();
}

TEST_F(FarmTest, TuneAgainstAServerAndCancelAJob) {
  const std::string server = Serve();
  Agent(server);
  ProcessResult tune = Cli({"tune", "matmul(M=24,N=24,K=24)", "--server", server, "--device", "e2e-cpu", "--trials", "8",
                            "--batch-size", "4", "--strategy", "random", "--min-repeat-ms", "2"},
                           180s);
  ASSERT_EQ(tune.exit_code, 0) << tune.err << tune.out;
  EXPECT_NE(tune.out.find("GFLOP/s"), std::string::npos) << tune.out;

  // tunefarm::client reads the same log through the server.
  auto log = tunefarm::tuner::TuningLogClient::Connect(server);
  ASSERT_TRUE(log.ok()) << log.status();
  auto best = (*log)->QueryBest("matmul(K=24,N=24,M=24)", "e2e-cpu", 3);
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->size(), 3u);
  EXPECT_LE((*best)[0].seconds, (*best)[1].seconds);
  EXPECT_GT((*best)[0].gflops, 0);
  auto version = tunefarm::tuner::CurrentTemplateVersion("matmul(M=24,N=24,K=24)");
  ASSERT_TRUE(version.ok());
  EXPECT_EQ((*best)[0].template_version, *version);
  auto other = (*log)->QueryBest("matmul(M=24,N=24,K=24)", "e2e-cpu", 1, "0000000000000000");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(other->empty());
  auto unreachable = tunefarm::tuner::TuningLogClient::Connect("127.0.0.1:1", {.timeout_s = 2});
  ASSERT_TRUE(unreachable.ok());
  EXPECT_EQ((*unreachable)->QueryBest("matmul(M=24,N=24,K=24)", "e2e-cpu").status().code(),
            absl::StatusCode::kUnavailable);

  nlohmann::json spec = TwoTaskSpec(5000);
  const int64_t job = Submit(server, spec);
  ASSERT_TRUE(WaitFor([&] { return TrialsDone(server, job) >= 1; }, 60s));
  ProcessResult cancel = Cli({"cancel", std::to_string(job), "--server", server});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  ProcessResult watch = Cli({"watch", std::to_string(job), "--server", server, "--json"}, 120s);
  nlohmann::json final = nlohmann::json::parse(watch.out, nullptr, false);
  EXPECT_EQ(final["state"], "JOB_STATE_CANCELLED") << watch.out;
  ProcessResult again = Cli({"cancel", std::to_string(job), "--server", server});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already ended"), std::string::npos) << again.err;
  ProcessResult missing = Cli({"watch", "999", "--server", server});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no job"), std::string::npos) << missing.err;

  // SIGTERM: the agent finishes or hands back its batch and exits cleanly.
  agents_[0]->Kill(SIGTERM);
  EXPECT_EQ(agents_[0]->Wait(60s), 0) << agents_[0]->Log();
}

}  // namespace
