// The file a CPU measurement process reads: every buffer of a workload, with
// seeded random inputs and, for outputs, the reference values and per-element
// tolerances. Written once per (workload, seed) by the backend, so the
// measurement process needs no template and never recomputes the reference.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tunefarm::device_agents {

struct MeasureBuffer {
  std::string name;
  bool is_output = false;
  uint64_t elements = 0;
  std::vector<float> input;      // inputs only
  std::vector<float> expected;   // outputs only
  std::vector<float> tolerance;  // outputs only
};

struct MeasureData {
  std::vector<MeasureBuffer> buffers;  // kernel argument order
};

// Writes to a temporary name and renames, so readers never see a torn file.
absl::Status WriteMeasureData(const std::string& path, const MeasureData& data);
absl::StatusOr<MeasureData> ReadMeasureData(const std::string& path);

// Compares output buffer `b` as computed (`out`, b.elements values) with its
// reference: empty when every element is within its tolerance (NaN never
// is), else a message naming the first wrong element and how many are.
std::string CheckOutput(const MeasureBuffer& b, const float* out);

// Fills `out` with values uniform in [-1, 1) from a fixed generator, so a
// seed means the same inputs on every machine.
void FillRandom(std::vector<float>& out, uint64_t seed);

}  // namespace tunefarm::device_agents
