// Asks a tuning log for the best config of a workload on a device, as a
// program that picks its own kernel parameters at run time would.
#include <cstdio>

#include "tunefarm/tuner/client.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: best_config LOG DEVICE_KEY WORKLOAD\n");
    return 2;
  }
  auto log = tunefarm::tuner::TuningLogClient::OpenFile(argv[1]);
  if (!log.ok()) {
    std::fprintf(stderr, "%s\n", std::string(log.status().message()).c_str());
    return 1;
  }
  auto best = (*log)->QueryBest(argv[3], argv[2]);
  if (!best.ok()) {
    std::fprintf(stderr, "%s\n", std::string(best.status().message()).c_str());
    return 1;
  }
  if (best->empty()) {
    std::printf("%s was never tuned on %s\n", argv[3], argv[2]);
    return 1;
  }
  const tunefarm::tuner::BestConfig& b = best->front();
  std::printf("%s on %s: %.3g s (%.2f GFLOP/s), record %lld, config %s\n", b.workload.c_str(), b.device_key.c_str(),
              b.seconds, b.gflops, static_cast<long long>(b.record_id), b.config_json.c_str());
  return 0;
}
