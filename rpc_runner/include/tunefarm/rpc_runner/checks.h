// Checks and conversions both gRPC services of the farm share.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace tunefarm::rpc_runner {

// Compares secrets in time independent of where they differ.
bool TokenMatches(const std::string& expected, const std::string& given);

// A device key: 1..128 letters, digits, '-', '_' or '.'. The error is
// INVALID_ARGUMENT naming `field`.
absl::Status CheckDeviceKey(const std::string& field, const std::string& key);

// The one place an absl::Status becomes a grpc::Status (same code, same
// message).
grpc::Status ToGrpcStatus(const absl::Status& s);

}  // namespace tunefarm::rpc_runner
