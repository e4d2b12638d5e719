// `tunefarm` subcommands that run or talk to a tuning server.
#pragma once

#include <cstdint>
#include <string>

#include "tunefarm/tuner/server.h"
#include "tunefarm/v1/service.pb.h"

namespace tunefarm::cli {

// How a client reaches the server.
struct ClientArgs {
  std::string server;      // host:port; empty: $TUNEFARM_SERVER
  std::string token_file;  // empty: $TUNEFARM_TOKEN_FILE, else no token
  std::string tls_ca;      // PEM of the server's CA; empty: plain TCP
  bool json = false;
};

// The PEM files are read here; the server takes their contents.
int RunServe(tuner::ServerOptions options, const std::string& token_file, const std::string& tls_cert_file,
             const std::string& tls_key_file);
int RunAgentCommand(const std::string& server, const std::string& device, const std::string& key,
                    const std::string& token_file, const std::string& tls_ca, int workers, int replay_latency_ms);
int RunDevices(const ClientArgs& c);
// Submits a spec file (JSON); with `watch`, follows it to the end.
int RunSubmit(const ClientArgs& c, const std::string& spec_file, bool watch);
int RunSubmitSpec(const ClientArgs& c, const v1::JobSpec& spec, bool watch);
int RunJobs(const ClientArgs& c, bool all);
int RunWatch(const ClientArgs& c, int64_t job_id);
int RunCancel(const ClientArgs& c, int64_t job_id);
// JSON lines of tunefarm.v1.TuningRecord, from a server (c.server or
// $TUNEFARM_SERVER set) or else from the database file `db_path`.
int RunExport(const ClientArgs& c, const std::string& db_path, const std::string& workload,
              const std::string& device_key, const std::string& out_file);
// `export --format library`: a kernel library for one device (see
// tuner/kernel_library.h), from a server or else the database file.
struct LibraryArgs {
  std::string device_key;
  std::string workloads_file;  // one workload per line; '#' starts a comment
  std::string output_dir;
  std::string prefix = "tunefarm";
  std::string device_class;  // "cpu" or "cuda"; empty: from the log's records of device_key
  bool strict = false;       // exit 1 when any workload fell back
};
int RunExportLibrary(const ClientArgs& c, const std::string& db_path, const LibraryArgs& l);
int RunImport(const ClientArgs& c, const std::string& db_path, const std::string& in_file, bool atomic);
int RunBestRemote(const ClientArgs& c, const std::string& workload, const std::string& device_key, int top);

}  // namespace tunefarm::cli
