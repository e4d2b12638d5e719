// The tuning log as programs and builds read it: the best measured config of
// a workload on a device, from a tuning-log file or from a tuning server.
// Installed as the library tunefarm::client.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::tuner {

// One successful measurement, with its provenance.
struct BestConfig {
  int64_t record_id = 0;
  std::string workload;          // canonical key
  std::string device_key;
  std::string target_json;       // the full target the record was measured on
  std::string toolchain;         // compilers it was built with
  std::string template_name;
  std::string template_version;  // hash of the template's code generator
  uint64_t config_index = 0;     // index into that template version's space
  std::string config_json;       // knob values, e.g. {"mr":6,"nv":4,...}
  double seconds = 0;            // fastest measured run (min_cost)
  double gflops = 0;
  int64_t timestamp_ms = 0;      // when it was measured (Unix epoch)
};

struct ConnectOptions {
  std::string token;      // bearer token, if the server wants one
  std::string tls_ca_pem;  // the server's CA certificate; empty: plain TCP
  int timeout_s = 30;      // per call
};

// Thread-compatible: one object per thread, or external locking.
class TuningLogClient {
 public:
  virtual ~TuningLogClient() = default;

  // A tuning-log file, opened read-only. NotFound when there is none.
  static absl::StatusOr<std::unique_ptr<TuningLogClient>> OpenFile(const std::string& path);
  // A tuning server at "host:port". Connecting is lazy: an unreachable
  // server shows up as Unavailable from the first query.
  static absl::StatusOr<std::unique_ptr<TuningLogClient>> Connect(const std::string& address,
                                                                  const ConnectOptions& options = {});

  // The `k` fastest successful records of `workload` (any spelling
  // ParseWorkload accepts) on `device_key`, fastest first; an empty key
  // means any real device (never replayed ones). An empty
  // `template_version` means any version; give the current one (see
  // CurrentTemplateVersion) when the config index is to be used with this
  // build's templates. InvalidArgument for a malformed workload or key.
  virtual absl::StatusOr<std::vector<BestConfig>> QueryBest(std::string_view workload, std::string_view device_key,
                                                            int k = 1, std::string_view template_version = {}) = 0;
};

// The template version hash this build gives `workload`'s records on
// devices of `device_class`: "cpu" or "cuda" (records of the same workload
// on a GPU come from another template and carry another version).
absl::StatusOr<std::string> CurrentTemplateVersion(std::string_view workload, std::string_view device_class = "cpu");

}  // namespace tunefarm::tuner
