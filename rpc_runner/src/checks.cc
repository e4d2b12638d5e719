#include "tunefarm/rpc_runner/checks.h"

#include <cctype>

namespace tunefarm::rpc_runner {

bool TokenMatches(const std::string& expected, const std::string& given) {
  unsigned char diff = expected.size() == given.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) diff |= expected[i] ^ (i < given.size() ? given[i] : 0);
  return diff == 0;
}

absl::Status CheckDeviceKey(const std::string& field, const std::string& key) {
  if (key.empty() || key.size() > 128) return absl::InvalidArgumentError(field + " must be 1..128 characters");
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return absl::InvalidArgumentError(field + " may hold only letters, digits, '-', '_' and '.'");
    }
  }
  return absl::OkStatus();
}

grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace tunefarm::rpc_runner
