#include <algorithm>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "hash.h"
#include "tunefarm/kernels/codegen_c.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::kernels {

TemplateRegistry::TemplateRegistry() {
  // One line per built-in template.
  Add(NewMatmulTemplate());
  Add(NewBatchMatmulTemplate());
  Add(NewConv2dTemplate());
  Add(NewDepthwiseConv2dTemplate());
  Add(NewCudaMatmulTemplate());
  Add(NewCudaConv2dTemplate());
}

std::string_view DeviceClassName(DeviceClass d) {
  switch (d) {
    case DeviceClass::kCpu: return "cpu";
    case DeviceClass::kCuda: return "cuda";
  }
  return "?";
}

std::optional<DeviceClass> DeviceClassFromName(std::string_view name) {
  for (DeviceClass d : {DeviceClass::kCpu, DeviceClass::kCuda}) {
    if (name == DeviceClassName(d)) return d;
  }
  return std::nullopt;
}

std::optional<TextParamSpec> Template::TextParam(std::string_view name) const {
  for (TextParamSpec& p : TextParams()) {
    if (p.name == name) return std::move(p);
  }
  return std::nullopt;
}

TemplateRegistry& TemplateRegistry::Global() {
  static TemplateRegistry* r = new TemplateRegistry();
  return *r;
}

void TemplateRegistry::Add(std::unique_ptr<Template> t) { templates_.push_back(std::move(t)); }

const Template* TemplateRegistry::Find(std::string_view op, DeviceClass device) const {
  for (const auto& t : templates_) {
    if (t->op() == op && t->device() == device) return t.get();
  }
  return nullptr;
}

std::vector<const Template*> TemplateRegistry::All() const {
  std::vector<const Template*> out;
  for (const auto& t : templates_) out.push_back(t.get());
  return out;
}

namespace {

std::string Hex16(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// The compiler, flags and source of config `c`, or the reason it has none.
absl::StatusOr<std::string> KernelText(const Template& t, const Workload& w, const ConfigSpace& space,
                                       const Config& c) {
  absl::StatusOr<Kernel> kernel = t.Instantiate(w, space, c);
  if (!kernel.ok()) return kernel.status();
  std::string text = absl::StrCat(kernel->compile.compiler, " ", kernel->compile.flags, "\n");
  if (t.device() == DeviceClass::kCuda) {
    absl::StatusOr<CudaKernelSource> src = GenerateCuda(kernel->func);
    if (!src.ok()) return src.status();
    absl::StrAppend(&text, src->source);
  } else {
    absl::StatusOr<std::string> src = GenerateC(kernel->func);
    if (!src.ok()) return src.status();
    absl::StrAppend(&text, *src);
  }
  return text;
}

absl::StatusOr<std::string> ComputeTemplateVersion(const Template& t, const Workload& w) {
  absl::StatusOr<ConfigSpace> space = t.Space(w);
  if (!space.ok()) return space.status();
  std::string text = absl::StrCat(std::string(t.op()), "\n", std::string(t.declared_version()), "\n");
  for (const Knob& k : space->knobs()) {
    absl::StrAppend(&text, k.name, ":");
    for (const KnobValue& v : k.values) absl::StrAppend(&text, KnobValueToString(v), ",");
    absl::StrAppend(&text, "\n");
  }
  const Config d = t.DefaultConfig(w, *space);
  absl::StatusOr<std::string> default_text = KernelText(t, w, *space, d);
  if (!default_text.ok()) return default_text.status();
  absl::StrAppend(&text, *default_text);
  // Every value of every knob once, the other knobs at their defaults: a
  // change to the code of any knob's value (not only the default's) gives
  // a new version. A variation that does not instantiate counts as such.
  for (size_t k = 0; k < space->knobs().size(); ++k) {
    for (uint32_t choice = 0; choice < space->knobs()[k].values.size(); ++choice) {
      if (choice == d.choices[k]) continue;
      std::vector<uint32_t> choices = d.choices;
      choices[k] = choice;
      absl::StatusOr<Config> c = space->FromChoices(std::move(choices));
      if (!c.ok()) return c.status();
      absl::StatusOr<std::string> variation = KernelText(t, w, *space, *c);
      absl::StrAppend(&text, "\n#", space->knobs()[k].name, "=", KnobValueToString(space->knobs()[k].values[choice]),
                      "\n", variation.ok() ? *variation : "(not instantiable)");
    }
  }
  return Hex16(Fnv1a64(text));
}

}  // namespace

absl::StatusOr<std::string> TemplateVersion(const Template& t, const Workload& w) {
  // Generating every variation takes tens of milliseconds, and a tuning
  // run asks for the versions of every workload in the log.
  static std::mutex mu;
  static std::unordered_map<std::string, std::string> versions;
  const std::string key = absl::StrCat(absl::Hex(reinterpret_cast<uintptr_t>(&t)), "/", std::string(t.op()), "/",
                                       std::string(t.declared_version()), "/", w.Key());
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = versions.find(key); it != versions.end()) return it->second;
  }
  absl::StatusOr<std::string> v = ComputeTemplateVersion(t, w);
  if (v.ok()) {
    std::lock_guard<std::mutex> lock(mu);
    versions.emplace(key, *v);
  }
  return v;
}

std::string TemplateCatalogHash(std::vector<std::pair<std::string, std::string>> templates) {
  std::sort(templates.begin(), templates.end());
  std::string text;
  for (const auto& [name, version] : templates) absl::StrAppend(&text, name, "@", version, "\n");
  return Hex16(Fnv1a64(text));
}

std::vector<std::pair<std::string, std::string>> TemplateRegistry::Catalog() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Template* t : All()) out.emplace_back(std::string(t->op()), std::string(t->declared_version()));
  return out;
}

}  // namespace tunefarm::kernels
