#include "tunefarm/device_agents/agent.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <random>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/v1/agent.grpc.pb.h"

namespace tunefarm::device_agents {
namespace v1 = tunefarm::v1;
namespace asio = boost::asio;

namespace {

using Stream = grpc::ClientReaderWriter<v1::AgentMessage, v1::ServerMessage>;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsRefusal(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAUTHENTICATED || c == grpc::StatusCode::PERMISSION_DENIED ||
         c == grpc::StatusCode::FAILED_PRECONDITION || c == grpc::StatusCode::INVALID_ARGUMENT;
}

// All state lives on the io_context's one thread, except what the reader
// thread and the measuring thread post to it.
class Agent {
 public:
  Agent(const AgentOptions& o, std::unique_ptr<DeviceBackend> backend, std::shared_ptr<grpc::Channel> channel)
      : options_(o),
        backend_(std::move(backend)),
        stub_(v1::AgentService::NewStub(channel)),
        signals_(io_, SIGTERM, SIGINT),
        heartbeat_(io_),
        reconnect_(io_) {}

  absl::Status Run() {
    WaitSignal();
    asio::post(io_, [this] { Connect(); });
    io_.run();
    if (measurer_.joinable()) measurer_.join();
    return result_;
  }

 private:
  struct Work {
    v1::MeasureBatch batch;
    uint64_t epoch = 0;  // the connection it came on
  };

  void WaitSignal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (!draining_) {
        draining_ = true;
        spdlog::info("signal {}: finishing the current batch, then exiting (again to exit now)", sig);
        while (!queue_.empty()) {
          Return(queue_.front().batch.lease_id(), "the agent is shutting down");
          queue_.pop_front();
        }
        if (!running_) Stop();
        WaitSignal();
      } else {
        spdlog::info("signal {}: handing the current batch back and exiting now", sig);
        if (running_) Return(running_lease_, "the agent was stopped");
        abandon_ = true;
        Stop();
      }
    });
  }

  void Connect() {
    if (stopping_) return;
    ++epoch_;
    ctx_ = std::make_unique<grpc::ClientContext>();
    stream_ = stub_->Attach(ctx_.get());
    v1::AgentMessage hello;
    v1::AgentHello* h = hello.mutable_hello();
    *h->mutable_target() = backend_->target();
    auto catalog = kernels::TemplateRegistry::Global().Catalog();
    for (const auto& [name, version] : catalog) {
      v1::TemplateInfo* t = h->add_templates();
      t->set_name(name);
      t->set_declared_version(version);
    }
    h->set_template_hash(kernels::TemplateCatalogHash(catalog));
    int workers = options_.backend.compile_workers > 0 ? options_.backend.compile_workers
                                                       : static_cast<int>(std::thread::hardware_concurrency());
    h->set_max_batch(std::max(1, workers));
    h->set_token(options_.token);
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    h->set_name(absl::StrCat(host, ":", getpid()));
    h->set_version(TUNEFARM_VERSION);
    last_heard_ms_ = NowMs();
    if (!stream_->Write(hello)) spdlog::debug("hello could not be sent; the reader will report why");
    uint64_t epoch = epoch_;
    Stream* stream = stream_.get();
    if (reader_.joinable()) reader_.join();
    reader_ = std::thread([this, stream, epoch] {
      v1::ServerMessage m;
      while (stream->Read(&m)) asio::post(io_, [this, m, epoch] { OnMessage(m, epoch); });
      asio::post(io_, [this, epoch] { OnDisconnected(epoch); });
    });
  }

  void OnMessage(const v1::ServerMessage& m, uint64_t epoch) {
    if (epoch != epoch_) return;
    last_heard_ms_ = NowMs();
    switch (m.msg_case()) {
      case v1::ServerMessage::kWelcome:
        agent_id_ = m.welcome().agent_id();
        heartbeat_ms_ = std::max(100, m.welcome().heartbeat_interval_ms());
        backoff_ms_ = 0;
        spdlog::info("attached to {} as {} (key {})", options_.server, agent_id_, backend_->target().device_key());
        ScheduleHeartbeat();
        break;
      case v1::ServerMessage::kBatch:
        if (draining_) {
          Return(m.batch().lease_id(), "the agent is shutting down");
        } else {
          queue_.push_back({m.batch(), epoch});
          MaybeStartBatch();
        }
        break;
      case v1::ServerMessage::kCancel:
        std::erase_if(queue_, [&](const Work& w) { return w.batch.lease_id() == m.cancel().lease_id(); });
        if (running_ && running_lease_ == m.cancel().lease_id()) cancelled_running_ = true;
        break;
      case v1::ServerMessage::kAck:
      case v1::ServerMessage::kHeartbeat:
      default:
        break;
    }
  }

  void OnDisconnected(uint64_t epoch) {
    if (epoch != epoch_) return;
    heartbeat_.cancel();
    grpc::Status s = stream_->Finish();
    stream_.reset();  // nothing may touch a finished stream
    queue_.clear();  // the server re-queues everything it leased us
    if (stopping_) {
      reconnect_.cancel();
      if (!running_) io_.stop();
      return;
    }
    if (IsRefusal(s.error_code())) {
      spdlog::error("the server refused this agent: {}", s.error_message());
      result_ = absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
      stopping_ = true;
      signals_.cancel();
      if (!running_) io_.stop();
      return;
    }
    backoff_ms_ = backoff_ms_ == 0 ? 200 : std::min(options_.max_backoff_ms, backoff_ms_ * 2);
    std::uniform_int_distribution<int> jitter(0, backoff_ms_ / 4);
    int wait = backoff_ms_ + jitter(rng_);
    spdlog::warn("lost the server ({}: {}); reconnecting in {} ms", static_cast<int>(s.error_code()), s.error_message(),
                 wait);
    reconnect_.expires_after(std::chrono::milliseconds(wait));
    reconnect_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) Connect();
    });
  }

  void ScheduleHeartbeat() {
    heartbeat_.expires_after(std::chrono::milliseconds(heartbeat_ms_));
    heartbeat_.async_wait([this, epoch = epoch_](const boost::system::error_code& ec) {
      if (ec || epoch != epoch_ || stopping_) return;
      if (NowMs() - last_heard_ms_ > 3 * heartbeat_ms_) {
        spdlog::warn("the server is silent; reconnecting");
        ctx_->TryCancel();
        return;
      }
      v1::AgentMessage hb;
      hb.mutable_heartbeat()->set_sent_ms(NowMs());
      Write(hb);
      ScheduleHeartbeat();
    });
  }

  void Write(const v1::AgentMessage& m) {
    if (stream_) stream_->Write(m);  // a failure shows up on the reader
  }

  void Return(uint64_t lease, const std::string& why) {
    v1::AgentMessage m;
    m.mutable_returned()->set_lease_id(lease);
    m.mutable_returned()->set_reason(why);
    Write(m);
  }

  void MaybeStartBatch() {
    if (running_ || queue_.empty()) return;
    Work w = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    running_lease_ = w.batch.lease_id();
    cancelled_running_ = false;
    if (measurer_.joinable()) measurer_.join();
    measurer_ = std::thread([this, w = std::move(w)] {
      std::vector<v1::MeasureRequest> requests(w.batch.requests().begin(), w.batch.requests().end());
      const uint64_t lease = w.batch.lease_id();
      absl::StatusOr<std::vector<v1::MeasureResult>> r =
          backend_->Measure(requests, [&](size_t i, const v1::MeasureResult& res) {
            asio::post(io_, [this, lease, i, res, epoch = w.epoch] { SendResult(lease, i, res, epoch); });
          });
      asio::post(io_, [this, lease, st = r.status(), epoch = w.epoch] { OnBatchDone(lease, st, epoch); });
    });
  }

  void SendResult(uint64_t lease, size_t i, const v1::MeasureResult& res, uint64_t epoch) {
    if (epoch != epoch_ || (cancelled_running_ && lease == running_lease_)) return;
    v1::AgentMessage m;
    m.mutable_result()->set_lease_id(lease);
    m.mutable_result()->set_index(static_cast<uint32_t>(i));
    *m.mutable_result()->mutable_result() = res;
    Write(m);
  }

  void OnBatchDone(uint64_t lease, const absl::Status& s, uint64_t epoch) {
    running_ = false;
    if (!s.ok()) {
      spdlog::error("batch {} could not be measured: {}", lease, std::string(s.message()));
      if (epoch == epoch_) Return(lease, std::string(s.message()));
    } else {
      spdlog::debug("batch {} done", lease);
    }
    if (stopping_ && abandon_) return;
    if (draining_ && queue_.empty()) {
      Stop();
      return;
    }
    if (stopping_) {
      io_.stop();
      return;
    }
    MaybeStartBatch();
  }

  // Ends the stream cleanly; io_.run() returns once nothing is in flight.
  void Stop() {
    if (stopping_) return;
    stopping_ = true;
    signals_.cancel();
    heartbeat_.cancel();
    reconnect_.cancel();
    if (stream_) {
      // Half-closing lets the server read every result sent so far before it
      // ends the call; cancelling could drop them in transit.
      stream_->WritesDone();
      reconnect_.expires_after(std::chrono::seconds(5));
      reconnect_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) ctx_->TryCancel();
      });
    } else {
      io_.stop();
    }
    if (abandon_) {
      // The batch in flight cannot be interrupted; its measurement processes
      // die with this process (PR_SET_PDEATHSIG).
      spdlog::info("agent stopped");
      spdlog::default_logger()->flush();
      std::_Exit(0);
    }
  }

  const AgentOptions& options_;
  std::unique_ptr<DeviceBackend> backend_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer heartbeat_;
  asio::steady_timer reconnect_;
  std::mt19937 rng_{std::random_device{}()};

  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<Stream> stream_;
  std::thread reader_;
  std::thread measurer_;
  uint64_t epoch_ = 0;
  std::string agent_id_;
  int heartbeat_ms_ = 2000;
  int backoff_ms_ = 0;
  int64_t last_heard_ms_ = 0;
  std::deque<Work> queue_;
  bool running_ = false;
  uint64_t running_lease_ = 0;
  bool cancelled_running_ = false;
  bool draining_ = false;
  bool stopping_ = false;
  bool abandon_ = false;
  absl::Status result_;

 public:
  ~Agent() {
    if (reader_.joinable()) reader_.join();
  }
};

}  // namespace

absl::Status RunAgent(const AgentOptions& options) {
  if (options.server.empty()) return absl::InvalidArgumentError("no server address given");
  absl::StatusOr<std::unique_ptr<DeviceBackend>> backend = NewBackend(options.device, options.backend);
  if (!backend.ok()) return backend.status();
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  Agent agent(options, std::move(*backend), grpc::CreateCustomChannel(options.server, creds, args));
  return agent.Run();
}

}  // namespace tunefarm::device_agents
