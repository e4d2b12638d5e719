// The gRPC side of the device registry: the AgentService that agents dial.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "tunefarm/rpc_runner/dispatcher.h"

namespace tunefarm::rpc_runner {

struct AgentServiceOptions {
  // Agents must present this token in their hello; empty: no token needed.
  std::string token;
  // The server's template catalog hash (kernels::TemplateCatalogHash of
  // its registry); an agent with another one is refused.
  std::string template_hash;
};

// One reactor per attached agent; `dispatcher` must outlive the service.
// A refused agent gets its stream ended with UNAUTHENTICATED (token) or
// FAILED_PRECONDITION (templates), and nobody else notices.
std::unique_ptr<grpc::Service> NewAgentService(Dispatcher& dispatcher, AgentServiceOptions options);

}  // namespace tunefarm::rpc_runner
