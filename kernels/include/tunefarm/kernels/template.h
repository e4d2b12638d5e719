// Kernel templates: a template turns (workload, config) into a loop-nest IR
// for one device class, declares its config space, and ships a naive
// reference implementation every candidate is checked against.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/ir.h"
#include "tunefarm/kernels/workload.h"

namespace tunefarm::kernels {

// How the C source of a CPU candidate is to be compiled; knobs of the space.
struct CompileSpec {
  std::string compiler;  // "clang" or "gcc"
  std::string flags;     // e.g. "-O3 -funroll-loops"; -march=native is added by the backend
};

// The device class a template's kernels are generated for: C for CPUs,
// CUDA C++ for NVIDIA GPUs.
enum class DeviceClass : uint8_t { kCpu, kCuda };
// "cpu", "cuda".
std::string_view DeviceClassName(DeviceClass d);
// The inverse; nullopt for any other name.
std::optional<DeviceClass> DeviceClassFromName(std::string_view name);

struct Kernel {
  ir::LoweredFunc func;
  CompileSpec compile;
};

// The expected output of a reference run: per output element the value and
// the largest absolute error a correct candidate may have.
struct ReferenceOutput {
  std::vector<float> expected;
  std::vector<float> tolerance;
};

// A parameter whose value is one of a few names, e.g. layout=NCHW|NHWC.
struct TextParamSpec {
  std::string name;
  std::vector<std::string> values;
};

class Template {
 public:
  virtual ~Template() = default;

  // The operator this template implements, e.g. "matmul".
  virtual std::string_view op() const = 0;
  // One template per (operator, device class).
  virtual DeviceClass device() const { return DeviceClass::kCpu; }
  // Parameter names in canonical order ("M", "N", "K").
  virtual std::vector<std::string> ParamNames() const = 0;
  // Parameters that may be left out, with their defaults, in canonical order
  // after ParamNames(). A workload lists one only when it differs from its
  // default, so adding an optional parameter never changes existing keys.
  virtual std::vector<std::pair<std::string, int64_t>> OptionalParams() const { return {}; }
  // Parameters whose values are names; required, listed after the others.
  virtual std::vector<TextParamSpec> TextParams() const { return {}; }
  // The spec of text parameter `name`, if the template has one.
  std::optional<TextParamSpec> TextParam(std::string_view name) const;
  // Checks ranges of a parsed workload (dimensions, memory footprint).
  virtual absl::Status Validate(const Workload& w) const = 0;

  // Bumped by hand whenever the generated code for a config changes meaning.
  virtual std::string_view declared_version() const = 0;

  virtual absl::StatusOr<ConfigSpace> Space(const Workload& w) const = 0;
  virtual Config DefaultConfig(const Workload& w, const ConfigSpace& space) const = 0;
  // A few configs of `space` worth measuring early for this shape (after the
  // default), chosen by rule rather than by search; none by default.
  virtual std::vector<Config> SeedConfigs(const Workload&, const ConfigSpace&) const { return {}; }
  // Lowers one config to IR. Fails with InvalidArgument for a config that
  // cannot be instantiated (recorded as an instantiation error).
  virtual absl::StatusOr<Kernel> Instantiate(const Workload& w, const ConfigSpace& space,
                                             const Config& c) const = 0;

  // Buffers in argument order; the same list the lowered function takes.
  virtual std::vector<ir::BufferArg> Buffers(const Workload& w) const = 0;
  // Computes the outputs for `inputs` (one span per input buffer, in
  // argument order) in higher precision, with per-element tolerances.
  virtual std::vector<ReferenceOutput> Reference(const Workload& w,
                                                 std::span<const std::span<const float>> inputs) const = 0;
  // Floating-point operations of one run, for GFLOP/s.
  virtual double Flops(const Workload& w) const = 0;
};

// A hash (16 hex digits) of the template's declared version, its config
// space for `w`, and the compiler, flags and source (C or CUDA) of its
// default config for `w` and of each one-knob variation of it (every value
// of every knob, the others at their defaults): records are keyed by it, so
// a change to the space or to the code of any knob value never mixes old
// measurements with new code. Computed once per template and workload in a
// process (tens of milliseconds), then remembered; thread-safe.
absl::StatusOr<std::string> TemplateVersion(const Template& t, const Workload& w);

// A hash (16 hex digits) of (operator, declared version) pairs, in any
// order: a farm agent and its server compare their catalogs with it.
std::string TemplateCatalogHash(std::vector<std::pair<std::string, std::string>> templates);

// Templates by operator. The built-in ones are registered on first use;
// tests may add their own.
class TemplateRegistry {
 public:
  static TemplateRegistry& Global();
  // The registry keeps the template for the life of the process.
  void Add(std::unique_ptr<Template> t);
  const Template* Find(std::string_view op, DeviceClass device = DeviceClass::kCpu) const;
  std::vector<const Template*> All() const;
  // (operator, declared version) of every template.
  std::vector<std::pair<std::string, std::string>> Catalog() const;

 private:
  TemplateRegistry();
  std::vector<std::unique_ptr<Template>> templates_;
};

// Builtin template factories; one line each in registry.cc registers them.
std::unique_ptr<Template> NewMatmulTemplate();
std::unique_ptr<Template> NewBatchMatmulTemplate();
std::unique_ptr<Template> NewConv2dTemplate();
std::unique_ptr<Template> NewDepthwiseConv2dTemplate();
std::unique_ptr<Template> NewCudaMatmulTemplate();
std::unique_ptr<Template> NewCudaConv2dTemplate();

}  // namespace tunefarm::kernels
