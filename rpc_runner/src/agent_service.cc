#include "tunefarm/rpc_runner/agent_service.h"

#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tunefarm/rpc_runner/checks.h"
#include "tunefarm/v1/agent.grpc.pb.h"

namespace tunefarm::rpc_runner {
namespace v1 = tunefarm::v1;

namespace {

constexpr size_t kMaxTemplates = 256;
constexpr size_t kMaxText = 4096;

absl::Status CheckHello(const v1::AgentHello& h, const AgentServiceOptions& o) {
  if (!o.token.empty() && !TokenMatches(o.token, h.token())) {
    return absl::UnauthenticatedError("wrong or missing agent token");
  }
  if (absl::Status s = CheckDeviceKey("hello.target.device_key", h.target().device_key()); !s.ok()) return s;
  if (h.templates_size() > static_cast<int>(kMaxTemplates)) return absl::InvalidArgumentError("hello.templates: too many");
  if (h.name().size() > kMaxText || h.target().model().size() > kMaxText || h.target().toolchain().size() > kMaxText) {
    return absl::InvalidArgumentError("hello: a text field is longer than 4096 characters");
  }
  if (h.max_batch() < 0 || h.max_batch() > 4096) return absl::InvalidArgumentError("hello.max_batch must be 0..4096");
  if (h.template_hash() != o.template_hash) {
    std::string theirs;
    for (const v1::TemplateInfo& t : h.templates()) absl::StrAppend(&theirs, theirs.empty() ? "" : ", ", t.name(), "@", t.declared_version());
    return absl::FailedPreconditionError(absl::StrCat("the agent's templates (", theirs, "; hash ", h.template_hash(),
                                                      ") differ from the server's (hash ", o.template_hash,
                                                      "): run the same tunefarm version on both"));
  }
  return absl::OkStatus();
}

class AgentReactor;

// The dispatcher's handle; outlives the reactor, which detaches itself.
class Session : public AgentSession {
 public:
  explicit Session(AgentReactor* r) : reactor_(r) {}
  void Send(const v1::ServerMessage& m) override;
  void Close(const std::string& reason) override;
  void Reset() {
    std::lock_guard lock(mu_);
    reactor_ = nullptr;
  }

 private:
  std::mutex mu_;
  AgentReactor* reactor_;  // guarded by mu_; null once the call is done
};

class AgentReactor : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage> {
 public:
  AgentReactor(grpc::CallbackServerContext* ctx, Dispatcher& d, const AgentServiceOptions& o)
      : ctx_(ctx), dispatcher_(d), options_(o), session_(std::make_shared<Session>(this)) {
    StartRead(&in_);
  }

  void Enqueue(const v1::ServerMessage& m) {
    std::lock_guard lock(write_mu_);
    if (finishing_) return;
    out_.push_back(m);
    if (out_.size() == 1) StartWrite(&out_.front());
  }

  void EndWith(const grpc::Status& status) {
    std::lock_guard lock(write_mu_);
    if (finishing_) return;
    finishing_ = true;
    final_ = status;
    if (out_.empty()) Finish(final_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Leave("the stream ended");
      EndWith(grpc::Status::OK);
      return;
    }
    if (agent_id_.empty()) {
      if (in_.msg_case() != v1::AgentMessage::kHello) {
        EndWith(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the first message must be hello"));
        return;
      }
      absl::Status s = CheckHello(in_.hello(), options_);
      absl::StatusOr<std::string> id = s.ok() ? dispatcher_.Attach(session_, in_.hello(), ctx_->peer()) : s;
      if (!id.ok()) {
        spdlog::warn("refused an agent from {}: {}", ctx_->peer(), std::string(id.status().message()));
        EndWith(ToGrpcStatus(id.status()));
        return;
      }
      std::lock_guard lock(write_mu_);
      agent_id_ = *id;
    } else {
      switch (in_.msg_case()) {
        case v1::AgentMessage::kResult: dispatcher_.OnResult(agent_id_, in_.result()); break;
        case v1::AgentMessage::kHeartbeat: dispatcher_.OnHeartbeat(agent_id_); break;
        case v1::AgentMessage::kReturned: dispatcher_.OnReturn(agent_id_, in_.returned()); break;
        default: break;
      }
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(write_mu_);
    out_.pop_front();
    if (!ok) {
      out_.clear();
      finishing_ = true;
      return;  // the call is broken; OnDone follows
    }
    if (!out_.empty()) {
      StartWrite(&out_.front());
    } else if (finishing_) {
      Finish(final_);
    }
  }

  void OnCancel() override { Leave("the connection was lost"); }

  void OnDone() override {
    session_->Reset();
    Leave("the call ended");
    delete this;
  }

 private:
  void Leave(const std::string& why) {
    std::string id;
    {
      std::lock_guard lock(write_mu_);
      if (left_) return;
      left_ = true;
      id = agent_id_;
    }
    if (!id.empty()) dispatcher_.Detach(id, why);
  }

  grpc::CallbackServerContext* ctx_;
  Dispatcher& dispatcher_;
  const AgentServiceOptions& options_;
  std::shared_ptr<Session> session_;
  v1::AgentMessage in_;
  std::string agent_id_;  // set once, by the read path

  std::mutex write_mu_;
  std::deque<v1::ServerMessage> out_;  // front() is being written
  bool finishing_ = false;
  bool left_ = false;
  grpc::Status final_;
};

void Session::Send(const v1::ServerMessage& m) {
  std::lock_guard lock(mu_);
  if (reactor_ != nullptr) reactor_->Enqueue(m);
}

void Session::Close(const std::string& reason) {
  std::lock_guard lock(mu_);
  if (reactor_ != nullptr) reactor_->EndWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, reason));
}

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Dispatcher& d, AgentServiceOptions o) : dispatcher_(d), options_(std::move(o)) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* Attach(grpc::CallbackServerContext* ctx) override {
    return new AgentReactor(ctx, dispatcher_, options_);
  }

 private:
  Dispatcher& dispatcher_;
  AgentServiceOptions options_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewAgentService(Dispatcher& dispatcher, AgentServiceOptions options) {
  return std::make_unique<AgentServiceImpl>(dispatcher, std::move(options));
}

}  // namespace tunefarm::rpc_runner
