#include "reference_data.h"

#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tunefarm::device_agents {

absl::StatusOr<MeasureData> BuildMeasureData(const kernels::Template& t, const kernels::Workload& w, uint64_t seed) {
  MeasureData data;
  std::vector<std::span<const float>> inputs;
  std::vector<kernels::ir::BufferArg> args = t.Buffers(w);
  data.buffers.reserve(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    MeasureBuffer b;
    b.name = args[i].name;
    b.is_output = args[i].is_output;
    b.elements = static_cast<uint64_t>(args[i].elements);
    if (!b.is_output) {
      b.input.resize(b.elements);
      FillRandom(b.input, seed * 0x100000001B3ull + i);
    }
    data.buffers.push_back(std::move(b));
  }
  for (const MeasureBuffer& b : data.buffers) {
    if (!b.is_output) inputs.emplace_back(b.input);
  }
  std::vector<kernels::ReferenceOutput> ref = t.Reference(w, inputs);
  size_t o = 0;
  for (MeasureBuffer& b : data.buffers) {
    if (!b.is_output) continue;
    if (o >= ref.size() || ref[o].expected.size() != b.elements || ref[o].tolerance.size() != b.elements) {
      return absl::InternalError(absl::StrCat("template ", std::string(t.op()), " returned a malformed reference"));
    }
    b.expected = std::move(ref[o].expected);
    b.tolerance = std::move(ref[o].tolerance);
    ++o;
  }
  return data;
}

}  // namespace tunefarm::device_agents
