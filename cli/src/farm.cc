#include "farm.h"

#include <signal.h>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/agent.h"
#include "tunefarm/tuner/client.h"
#include "tunefarm/tuner/kernel_library.h"
#include "tunefarm/tuner/record_exchange.h"
#include "tunefarm/v1/service.grpc.pb.h"
#include "errors.h"

namespace tunefarm::cli {
namespace {

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A token file holds the token on its first line.
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  absl::StatusOr<std::string> text = ReadText(path);
  if (!text.ok()) return text.status();
  std::string t = text->substr(0, text->find('\n'));
  while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("the token file ", path, " is empty"));
  return t;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// How a client or an agent reaches the server: the address (else
// $TUNEFARM_SERVER), the token from its file (else $TUNEFARM_TOKEN_FILE's;
// none when neither is set) and the PEM of the server's CA (empty: plain
// TCP). Errors are meant for users.
struct ServerAccess {
  std::string server;
  std::string token;
  std::string tls_ca_pem;
};

absl::StatusOr<ServerAccess> ResolveAccess(const std::string& server, const std::string& token_file,
                                           const std::string& tls_ca) {
  ServerAccess a;
  a.server = server.empty() ? Env("TUNEFARM_SERVER") : server;
  if (a.server.empty()) return absl::InvalidArgumentError("no server given (use --server ADDR or TUNEFARM_SERVER)");
  const std::string tf = token_file.empty() ? Env("TUNEFARM_TOKEN_FILE") : token_file;
  if (!tf.empty()) {
    absl::StatusOr<std::string> t = ReadToken(tf);
    if (!t.ok()) return t.status();
    a.token = *t;
  }
  if (!tls_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadText(tls_ca);
    if (!ca.ok()) return ca.status();
    a.tls_ca_pem = *ca;
  }
  return a;
}

std::atomic<bool> g_serve_stop{false};
extern "C" void OnServeSignal(int) { g_serve_stop.store(true); }

std::string JsonOf(const google::protobuf::Message& m) {
  std::string s;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &s, o);
  return s;
}

// A connected client: stub plus per-call metadata.
class Client {
 public:
  static absl::StatusOr<Client> Connect(const ClientArgs& a) {
    absl::StatusOr<ServerAccess> access = ResolveAccess(a.server, a.token_file, a.tls_ca);
    if (!access.ok()) return access.status();
    Client c;
    c.token_ = access->token;
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!access->tls_ca_pem.empty()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = access->tls_ca_pem;
      creds = grpc::SslCredentials(ssl);
    }
    c.server_ = access->server;
    c.stub_ = v1::TuningService::NewStub(grpc::CreateChannel(c.server_, creds));
    return c;
  }
  std::unique_ptr<grpc::ClientContext> Context(int timeout_s = 30) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (timeout_s > 0) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
    return ctx;
  }
  v1::TuningService::Stub& stub() { return *stub_; }
  const std::string& server() const { return server_; }

 private:
  std::string server_, token_;
  std::unique_ptr<v1::TuningService::Stub> stub_;
};

int RpcError(const Client& c, const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return Error(kExitFailure, absl::StrCat("cannot reach the server at ", c.server(), ": ", s.error_message()));
  }
  bool usage = s.error_code() == grpc::StatusCode::INVALID_ARGUMENT || s.error_code() == grpc::StatusCode::NOT_FOUND;
  return Error(usage ? kExitUsage : kExitFailure, s.error_message());
}

int TaskTotal(const v1::JobStatus& j) {
  return j.spec().trials_per_task() > 0 ? j.spec().trials_per_task() : 0;
}

// Live progress: one bar per task, redrawn in place on a terminal; plain
// lines on anything else, when a task's state or tenth of progress changes.
class JobView {
 public:
  JobView() : tty_(isatty(STDERR_FILENO) == 1) {}
  void Show(const v1::JobStatus& j) {
    if (tty_) {
      if (lines_ > 0) std::fprintf(stderr, "\x1b[%dA", lines_);
      std::fprintf(stderr, "\x1b[2Kjob %lld %s  %d/%d trials  %s\n", static_cast<long long>(j.id()), tuner::JobStateName(j.state()),
                   j.trials_done(), j.trials_total(), j.message().c_str());
      for (const v1::TaskStatus& t : j.tasks()) {
        int total = TaskTotal(j) > 0 ? TaskTotal(j) : std::max(1, j.trials_total());
        constexpr int kWidth = 24;
        int filled = std::min(kWidth, t.trials_done() * kWidth / std::max(1, total));
        std::fprintf(stderr, "\x1b[2K  [%s%s] %5d  %8.1f GFLOP/s  %-9s %s\n", std::string(filled, '#').c_str(),
                     std::string(kWidth - filled, '.').c_str(), t.trials_done(), t.best_gflops(), t.state().c_str(),
                     t.workload().c_str());
      }
      lines_ = 1 + j.tasks_size();
      return;
    }
    std::string line = absl::StrCat("job ", j.id(), " ", tuner::JobStateName(j.state()), " ", j.trials_done(), "/", j.trials_total());
    int tenth = j.trials_total() > 0 ? j.trials_done() * 10 / j.trials_total() : 0;
    if (tenth != last_tenth_ || j.state() != last_state_) {
      std::fprintf(stderr, "%s trials%s%s\n", line.c_str(), j.message().empty() ? "" : "  ", j.message().c_str());
      last_tenth_ = tenth;
      last_state_ = j.state();
    }
  }

 private:
  bool tty_;
  int lines_ = 0;
  int last_tenth_ = -1;
  v1::JobState last_state_ = v1::JOB_STATE_UNSPECIFIED;
};

int Watch(Client& c, int64_t id, bool json) {
  auto ctx = c.Context(0);
  v1::WatchJobRequest req;
  req.set_id(id);
  auto reader = c.stub().WatchJob(ctx.get(), req);
  v1::JobStatus s, last;
  JobView view;
  bool any = false;
  while (reader->Read(&s)) {
    any = true;
    last = s;
    if (!json) view.Show(s);
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return RpcError(c, st);
  if (!any) return Error(kExitFailure, "the server sent no status");
  if (json) {
    std::cout << JsonOf(last);
  } else {
    for (const v1::TaskStatus& t : last.tasks()) {
      std::printf("%-44s %6d trials %4d errors  best %8.2f GFLOP/s  %s\n", t.workload().c_str(), t.trials_done(),
                  t.errors(), t.best_gflops(), t.state().c_str());
    }
    std::printf("job %lld %s%s%s\n", static_cast<long long>(last.id()), tuner::JobStateName(last.state()),
                last.message().empty() ? "" : ": ", last.message().c_str());
  }
  return last.state() == v1::JOB_STATE_DONE ? 0 : kExitFailure;
}

}  // namespace

int RunServe(tuner::ServerOptions options, const std::string& token_file, const std::string& tls_cert_file,
             const std::string& tls_key_file) {
  if (!token_file.empty()) {
    absl::StatusOr<std::string> t = ReadToken(token_file);
    if (!t.ok()) return Error(kExitUsage, std::string(t.status().message()));
    options.token = *t;
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) return Error(kExitUsage, "--tls-cert and --tls-key go together");
  if (!tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadText(tls_cert_file);
    absl::StatusOr<std::string> key = ReadText(tls_key_file);
    if (!cert.ok() || !key.ok()) {
      return Error(kExitUsage, std::string((cert.ok() ? key.status() : cert.status()).message()));
    }
    options.tls_cert_pem = *cert;
    options.tls_key_pem = *key;
  }
  struct sigaction sa {};
  sa.sa_handler = OnServeSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  absl::Status s = tuner::RunServer(options, g_serve_stop, [&](int port) {
    std::fprintf(stderr, "tunefarm: serving on port %d (database %s)\n", port,
                 options.db_path.empty() ? "default" : options.db_path.c_str());
  });
  if (!s.ok()) return Error(s.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure, std::string(s.message()));
  return 0;
}

int RunAgentCommand(const std::string& server, const std::string& device, const std::string& key,
                    const std::string& token_file, const std::string& tls_ca, int workers, int replay_latency_ms) {
  absl::StatusOr<ServerAccess> access = ResolveAccess(server, token_file, tls_ca);
  if (!access.ok()) return Error(kExitUsage, std::string(access.status().message()));
  device_agents::AgentOptions o;
  o.server = access->server;
  o.token = access->token;
  o.tls_ca_pem = access->tls_ca_pem;
  o.device = device;
  o.backend.device_key = key;
  o.backend.compile_workers = workers;
  o.backend.replay_latency_ms = replay_latency_ms;
  signal(SIGPIPE, SIG_IGN);
  absl::Status s = device_agents::RunAgent(o);
  if (!s.ok()) return Error(kExitFailure, std::string(s.message()));
  return 0;
}

int RunDevices(const ClientArgs& a) {
  absl::StatusOr<Client> c = Client::Connect(a);
  if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
  v1::ListDevicesResponse resp;
  grpc::Status s = c->stub().ListDevices(c->Context().get(), {}, &resp);
  if (!s.ok()) return RpcError(*c, s);
  if (a.json) {
    std::cout << JsonOf(resp);
    return 0;
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::printf("%-24s %6s %6s %8s %7s\n", "key", "total", "free", "pending", "leased");
  for (const v1::DeviceQueue& q : resp.devices()) {
    std::printf("%-24s %6d %6d %8d %7d\n", q.device_key().c_str(), q.total(), q.free(), q.pending(), q.leased());
    for (const v1::AgentStatus& ag : q.agents()) {
      std::printf("  %-10s %-22s %-24s %-28s heartbeat %.1f s ago  %s  %lld done\n", ag.agent_id().c_str(),
                  ag.name().c_str(), ag.peer().c_str(), ag.target().model().substr(0, 28).c_str(),
                  (now - ag.last_heartbeat_ms()) / 1000.0, ag.busy() ? "busy" : "free",
                  static_cast<long long>(ag.candidates_done()));
    }
  }
  if (resp.devices().empty()) std::printf("(no agents attached and nothing queued)\n");
  return 0;
}

int RunSubmitSpec(const ClientArgs& a, const v1::JobSpec& spec, bool watch) {
  absl::StatusOr<Client> c = Client::Connect(a);
  if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  v1::JobStatus job;
  grpc::Status s = c->stub().SubmitJob(c->Context().get(), req, &job);
  if (!s.ok()) return RpcError(*c, s);
  if (!watch) {
    if (a.json) {
      std::cout << JsonOf(job);
    } else {
      std::printf("job %lld submitted (%d workloads on %s); follow it with `tunefarm watch %lld`\n",
                  static_cast<long long>(job.id()), job.spec().workloads_size(), job.spec().device_key().c_str(),
                  static_cast<long long>(job.id()));
    }
    return 0;
  }
  if (!a.json) std::fprintf(stderr, "job %lld submitted\n", static_cast<long long>(job.id()));
  return Watch(*c, job.id(), a.json);
}

int RunSubmit(const ClientArgs& a, const std::string& spec_file, bool watch) {
  absl::StatusOr<std::string> text = ReadText(spec_file);
  if (!text.ok()) return Error(kExitUsage, std::string(text.status().message()));
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = false;
  if (auto st = google::protobuf::util::JsonStringToMessage(*text, &spec, o); !st.ok()) {
    return Error(kExitUsage, absl::StrCat(spec_file, ": not a valid job spec: ", std::string(st.message())));
  }
  return RunSubmitSpec(a, spec, watch);
}

int RunJobs(const ClientArgs& a, bool all) {
  absl::StatusOr<Client> c = Client::Connect(a);
  if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
  v1::ListJobsRequest req;
  req.set_include_finished(all);
  v1::ListJobsResponse resp;
  grpc::Status s = c->stub().ListJobs(c->Context().get(), req, &resp);
  if (!s.ok()) return RpcError(*c, s);
  if (a.json) {
    std::cout << JsonOf(resp);
    return 0;
  }
  std::printf("%-6s %-10s %-20s %6s %15s  %s\n", "id", "state", "device", "tasks", "trials", "name / message");
  for (const v1::JobStatus& j : resp.jobs()) {
    std::printf("%-6lld %-10s %-20s %6d %7d/%-7d  %s%s%s\n", static_cast<long long>(j.id()), tuner::JobStateName(j.state()),
                j.spec().device_key().c_str(), j.tasks_size(), j.trials_done(), j.trials_total(), j.spec().name().c_str(),
                j.message().empty() ? "" : "  ", j.message().c_str());
  }
  if (resp.jobs().empty()) std::printf(all ? "(no jobs)\n" : "(no queued or running jobs; --all shows finished ones)\n");
  return 0;
}

int RunWatch(const ClientArgs& a, int64_t id) {
  absl::StatusOr<Client> c = Client::Connect(a);
  if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
  return Watch(*c, id, a.json);
}

int RunCancel(const ClientArgs& a, int64_t id) {
  absl::StatusOr<Client> c = Client::Connect(a);
  if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
  v1::CancelJobRequest req;
  req.set_id(id);
  v1::JobStatus job;
  grpc::Status s = c->stub().CancelJob(c->Context().get(), req, &job);
  if (!s.ok()) return RpcError(*c, s);
  if (a.json) {
    std::cout << JsonOf(job);
  } else {
    std::printf("job %lld: %s\n", static_cast<long long>(id), job.message().c_str());
  }
  return 0;
}

int RunBestRemote(const ClientArgs& a, const std::string& workload, const std::string& device_key, int top) {
  absl::StatusOr<Client> c = Client::Connect(a);
  if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
  v1::QueryBestRequest req;
  req.set_workload(workload);
  req.set_device_key(device_key);
  req.set_k(top);
  v1::QueryBestResponse resp;
  grpc::Status s = c->stub().QueryBest(c->Context().get(), req, &resp);
  if (!s.ok()) return RpcError(*c, s);
  if (a.json) {
    std::cout << JsonOf(resp);
    return resp.records().empty() ? kExitFailure : 0;
  }
  if (resp.records().empty()) {
    return Error(kExitFailure, absl::StrCat("no successful record for ", workload,
                                            device_key.empty() ? "" : " on " + device_key, " on ", c->server()));
  }
  std::printf("%-4s %-12s %-10s %-20s %-8s %s\n", "rank", "seconds", "GFLOP/s", "device", "record", "config");
  int rank = 1;
  for (const v1::TuningRecord& r : resp.records()) {
    std::printf("%-4d %-12.6g %-10.2f %-20s %-8lld %s\n", rank++, tuner::FastestSeconds(r), r.gflops(),
                r.device_key().c_str(), static_cast<long long>(r.id()), r.config_json().c_str());
  }
  return 0;
}

namespace {

std::string Line(const v1::TuningRecord& r) {
  std::string s;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(r, &s, o);
  return s;
}

bool UseServer(const ClientArgs& c) { return !c.server.empty() || !Env("TUNEFARM_SERVER").empty(); }

}  // namespace

int RunExport(const ClientArgs& a, const std::string& db_path, const std::string& workload,
              const std::string& device_key, const std::string& out_file) {
  std::ofstream file;
  if (!out_file.empty() && out_file != "-") {
    file.open(out_file, std::ios::trunc);
    if (!file) return Error(kExitUsage, "cannot write " + out_file);
  }
  std::ostream& out = file.is_open() ? static_cast<std::ostream&>(file) : std::cout;
  int64_t n = 0;
  if (UseServer(a)) {
    absl::StatusOr<Client> c = Client::Connect(a);
    if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
    auto ctx = c->Context(0);
    v1::ExportRecordsRequest req;
    req.set_workload(workload);
    req.set_device_key(device_key);
    auto reader = c->stub().ExportRecords(ctx.get(), req);
    v1::TuningRecord r;
    while (reader->Read(&r)) {
      out << Line(r) << "\n";
      ++n;
    }
    if (grpc::Status s = reader->Finish(); !s.ok()) return RpcError(*c, s);
  } else {
    if (access(db_path.c_str(), F_OK) != 0) return Error(kExitFailure, "no tuning log at " + db_path);
    database::OpenOptions o;
    o.read_only = true;
    o.migrate_older = true;
    auto db = database::Database::Open(db_path, o);
    if (!db.ok()) return Error(kExitFailure, std::string(db.status().message()));
    absl::Status s = tuner::ExportRecords(**db, workload, device_key, [&](const v1::TuningRecord& r) {
      out << Line(r) << "\n";
      ++n;
      return true;
    });
    if (!s.ok()) return Error(s.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure, std::string(s.message()));
  }
  out.flush();
  if (!out) return Error(kExitFailure, "writing the records failed");
  std::fprintf(stderr, "exported %lld records\n", static_cast<long long>(n));
  return 0;
}

int RunExportLibrary(const ClientArgs& a, const std::string& db_path, const LibraryArgs& l) {
  if (l.device_key.empty()) return Error(kExitUsage, "--format library needs --device KEY");
  if (l.workloads_file.empty()) return Error(kExitUsage, "--format library needs --workloads FILE");
  if (l.output_dir.empty() || l.output_dir == "-") return Error(kExitUsage, "--format library needs -o DIR");
  std::ifstream in(l.workloads_file);
  if (!in) return Error(kExitUsage, "cannot read " + l.workloads_file);
  tuner::LibraryOptions o;
  if (!l.device_class.empty()) {
    o.device_class = kernels::DeviceClassFromName(l.device_class);
    if (!o.device_class) return Error(kExitUsage, "--device-class must be cpu or cuda, got '" + l.device_class + "'");
  }
  o.device_key = l.device_key;
  o.output_dir = l.output_dir;
  o.prefix = l.prefix;
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b != std::string::npos) o.workloads.push_back(line.substr(b, e - b + 1));
  }
  absl::StatusOr<std::unique_ptr<tuner::TuningLogClient>> log;
  if (UseServer(a)) {
    absl::StatusOr<ServerAccess> access = ResolveAccess(a.server, a.token_file, a.tls_ca);
    if (!access.ok()) return Error(kExitUsage, std::string(access.status().message()));
    tuner::ConnectOptions c;
    c.token = access->token;
    c.tls_ca_pem = access->tls_ca_pem;
    log = tuner::TuningLogClient::Connect(access->server, c);
  } else {
    log = tuner::TuningLogClient::OpenFile(db_path);
  }
  if (!log.ok()) return Error(kExitFailure, std::string(log.status().message()));
  absl::StatusOr<std::vector<tuner::LibraryEntry>> entries = tuner::WriteKernelLibrary(**log, o);
  if (!entries.ok()) {
    const bool usage = entries.status().code() == absl::StatusCode::kInvalidArgument ||
                       entries.status().code() == absl::StatusCode::kNotFound;
    return Error(usage ? kExitUsage : kExitFailure, std::string(entries.status().message()));
  }
  size_t width = 8;
  for (const tuner::LibraryEntry& e : *entries) width = std::max(width, e.workload.size());
  std::printf("%-*s  %-16s  %-8s  %s\n", static_cast<int>(width), "workload", "config from", "record", "details");
  int fell_back = 0;
  for (const tuner::LibraryEntry& e : *entries) {
    if (e.level != tuner::FallbackLevel::kExactDevice) ++fell_back;
    std::string record = e.record ? std::to_string(e.record->record_id) : "-";
    std::string details = e.record ? absl::StrCat(e.record->device_key, ", ", absl::SixDigits(e.record->gflops), " GFLOP/s")
                                   : std::string("default config");
    if (!e.why.empty()) absl::StrAppend(&details, " [", e.why, "]");
    std::printf("%-*s  %-16s  %-8s  %s\n", static_cast<int>(width), e.workload.c_str(),
                tuner::FallbackLevelName(e.level), record.c_str(), details.c_str());
  }
  std::fprintf(stderr, "wrote %zu kernels for %s to %s (%d fell back)\n", entries->size(), l.device_key.c_str(),
               l.output_dir.c_str(), fell_back);
  if (l.strict && fell_back > 0) {
    return Error(kExitFailure, absl::StrCat(fell_back, " workload(s) were not tuned on ", l.device_key, " (--strict)"));
  }
  return 0;
}

int RunImport(const ClientArgs& a, const std::string& db_path, const std::string& in_file, bool atomic) {
  std::ifstream in(in_file);
  if (!in) return Error(kExitUsage, "cannot read " + in_file);
  std::vector<v1::TuningRecord> records;
  std::vector<size_t> line_of;  // record -> line number
  std::vector<std::pair<size_t, std::string>> bad;  // (line, why)
  auto report_bad = [&] {
    std::stable_sort(bad.begin(), bad.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (const auto& [number, why] : bad) std::fprintf(stderr, "line %zu: %s\n", number, why.c_str());
  };
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    v1::TuningRecord r;
    if (auto st = google::protobuf::util::JsonStringToMessage(line, &r); !st.ok()) {
      std::string why(st.message());
      bad.emplace_back(number, why.substr(0, why.find('\n')));
      continue;
    }
    records.push_back(std::move(r));
    line_of.push_back(number);
  }
  int64_t inserted = 0, duplicates = 0;
  if (atomic && !bad.empty()) {
    report_bad();
    return Error(kExitFailure, absl::StrCat(bad.size(), " malformed lines; nothing imported (--atomic)"));
  }
  if (UseServer(a)) {
    if (atomic) return Error(kExitUsage, "--atomic works on a database file, not through a server");
    absl::StatusOr<Client> c = Client::Connect(a);
    if (!c.ok()) return Error(kExitUsage, std::string(c.status().message()));
    auto ctx = c->Context(0);
    v1::ImportRecordsResponse resp;
    auto writer = c->stub().ImportRecords(ctx.get(), &resp);
    for (const v1::TuningRecord& r : records) {
      if (!writer->Write(r)) break;
    }
    writer->WritesDone();
    if (grpc::Status s = writer->Finish(); !s.ok()) return RpcError(*c, s);
    inserted = resp.inserted();
    duplicates = resp.duplicates();
    for (const v1::ImportError& e : resp.errors()) {
      if (e.record() >= 1 && static_cast<size_t>(e.record()) <= line_of.size()) {
        bad.emplace_back(line_of[e.record() - 1], e.reason());
      }
    }
  } else {
    auto db = database::Database::Open(db_path);
    if (!db.ok()) return Error(kExitFailure, std::string(db.status().message()));
    absl::StatusOr<tuner::ImportCounts> counts = tuner::ImportRecords(**db, records, atomic);
    if (!counts.ok()) return Error(kExitFailure, std::string(counts.status().message()));
    inserted = counts->inserted;
    duplicates = counts->duplicates;
    for (const auto& [i, why] : counts->rejected) bad.emplace_back(line_of[i], why);
    if (atomic && !counts->rejected.empty()) {
      report_bad();
      return Error(kExitFailure, absl::StrCat(bad.size(), " bad records; nothing imported (--atomic)"));
    }
  }
  report_bad();
  std::fprintf(stderr, "imported %lld records (%lld already present, %zu lines rejected)\n",
               static_cast<long long>(inserted), static_cast<long long>(duplicates), bad.size());
  return bad.empty() ? 0 : kExitFailure;
}

}  // namespace tunefarm::cli
