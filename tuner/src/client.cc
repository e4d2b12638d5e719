#include "tunefarm/tuner/client.h"

#include <unistd.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tunefarm/database/database.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/record_exchange.h"
#include "tunefarm/v1/service.grpc.pb.h"

namespace tunefarm::tuner {
namespace {

BestConfig FromRecord(const v1::TuningRecord& r) {
  BestConfig b;
  b.record_id = r.id();
  b.workload = r.workload();
  b.device_key = r.device_key();
  b.target_json = r.target_json();
  b.toolchain = r.toolchain();
  b.template_name = r.template_name();
  b.template_version = r.template_version();
  b.config_index = r.config_index();
  b.config_json = r.config_json();
  b.seconds = FastestSeconds(r);
  b.gflops = r.gflops();
  b.timestamp_ms = r.timestamp_ms();
  return b;
}

absl::Status CheckQuery(int k, std::string_view device_key) {
  if (k < 1 || k > 1000) return absl::InvalidArgumentError("k must be 1..1000");
  if (device_key.size() > 128) return absl::InvalidArgumentError("device key longer than 128 characters");
  return absl::OkStatus();
}

class FileClient : public TuningLogClient {
 public:
  explicit FileClient(std::unique_ptr<database::Database> db) : db_(std::move(db)) {}

  absl::StatusOr<std::vector<BestConfig>> QueryBest(std::string_view workload, std::string_view device_key, int k,
                                                    std::string_view template_version) override {
    if (absl::Status s = CheckQuery(k, device_key); !s.ok()) return s;
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(workload);
    if (!w.ok()) return w.status();
    absl::StatusOr<std::vector<database::Record>> rows = db_->BestRecords(w->Key(), device_key, k, template_version);
    if (!rows.ok()) return rows.status();
    std::vector<BestConfig> out;
    // BestConfig has no device kind, so the devices table is not read.
    for (const database::Record& r : *rows) out.push_back(FromRecord(ToTuningRecord(r, /*device_kind=*/"")));
    return out;
  }

 private:
  std::unique_ptr<database::Database> db_;
};

absl::Status FromGrpc(const grpc::Status& s, const std::string& address) {
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(absl::StrCat("cannot reach the tuning server at ", address, ": ", s.error_message()));
  }
  return absl::Status(code, s.error_message());
}

class ServerClient : public TuningLogClient {
 public:
  ServerClient(std::string address, ConnectOptions options, std::unique_ptr<v1::TuningService::Stub> stub)
      : address_(std::move(address)), options_(std::move(options)), stub_(std::move(stub)) {}

  absl::StatusOr<std::vector<BestConfig>> QueryBest(std::string_view workload, std::string_view device_key, int k,
                                                    std::string_view template_version) override {
    if (absl::Status s = CheckQuery(k, device_key); !s.ok()) return s;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(options_.timeout_s));
    if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
    v1::QueryBestRequest req;
    req.set_workload(std::string(workload));
    req.set_device_key(std::string(device_key));
    req.set_k(k);
    req.set_template_version(std::string(template_version));
    v1::QueryBestResponse resp;
    if (grpc::Status s = stub_->QueryBest(&ctx, req, &resp); !s.ok()) return FromGrpc(s, address_);
    std::vector<BestConfig> out;
    for (const v1::TuningRecord& r : resp.records()) out.push_back(FromRecord(r));
    return out;
  }

 private:
  std::string address_;
  ConnectOptions options_;
  std::unique_ptr<v1::TuningService::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TuningLogClient>> TuningLogClient::OpenFile(const std::string& path) {
  if (access(path.c_str(), F_OK) != 0) return absl::NotFoundError(absl::StrCat("no tuning log at ", path));
  database::OpenOptions o;
  o.read_only = true;
  o.migrate_older = true;
  absl::StatusOr<std::unique_ptr<database::Database>> db = database::Database::Open(path, o);
  if (!db.ok()) return db.status();
  return std::make_unique<FileClient>(std::move(*db));
}

absl::StatusOr<std::unique_ptr<TuningLogClient>> TuningLogClient::Connect(const std::string& address,
                                                                          const ConnectOptions& options) {
  if (address.empty()) return absl::InvalidArgumentError("no server address given");
  if (options.timeout_s <= 0) return absl::InvalidArgumentError("timeout_s must be positive");
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    creds = grpc::SslCredentials(ssl);
  }
  return std::make_unique<ServerClient>(address, options,
                                        v1::TuningService::NewStub(grpc::CreateChannel(address, creds)));
}

absl::StatusOr<std::string> CurrentTemplateVersion(std::string_view workload, std::string_view device_class) {
  absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(workload);
  if (!w.ok()) return w.status();
  const std::optional<kernels::DeviceClass> d = kernels::DeviceClassFromName(device_class);
  if (!d) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device class '", std::string(device_class), "' (cpu or cuda)"));
  }
  const kernels::Template* t = kernels::TemplateRegistry::Global().Find(w->op, *d);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat("no ", std::string(device_class), " template for operator ", w->op));
  }
  return kernels::TemplateVersion(*t, *w);
}

}  // namespace tunefarm::tuner
