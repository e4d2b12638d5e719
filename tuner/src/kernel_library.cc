#include "tunefarm/tuner/kernel_library.h"

#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "tunefarm/kernels/codegen_c.h"
#include "tunefarm/kernels/codegen_cuda.h"
#include "tunefarm/kernels/template.h"

namespace tunefarm::tuner {
namespace {

// The ISA level of a CPU architecture ("x86_64-avx512" -> "avx512"), or the
// architecture itself when it has none.
std::string FamilyOfArch(const std::string& arch) {
  const size_t dash = arch.find('-');
  return dash == std::string::npos ? arch : arch.substr(dash + 1);
}

// Device keys end with the ISA level ("intel-xeon-avx512", "cpu-x86_64").
std::string FamilyOfKey(const std::string& key) {
  const size_t dash = key.rfind('-');
  return dash == std::string::npos ? key : key.substr(dash + 1);
}

// A string field of a target's JSON, "" when it has none.
std::string TargetField(const std::string& target_json, const char* field) {
  nlohmann::json j = nlohmann::json::parse(target_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains(field) || !j[field].is_string()) return "";
  return j[field].get<std::string>();
}

std::string FamilyOfTarget(const std::string& target_json) { return FamilyOfArch(TargetField(target_json, "arch")); }

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

std::string UtcTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool IsCIdentifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

struct Built {
  LibraryEntry entry;
  kernels::Workload workload;
  std::vector<kernels::ir::BufferArg> buffers;
  // Its calls must not overlap (a CUDA kernel with a split-K workspace).
  bool exclusive = false;
};

// C parameter list of a workload's buffers: inputs const; a CUDA kernel's
// host function also takes the stream.
std::string TypedParams(const std::vector<kernels::ir::BufferArg>& bufs, bool cuda) {
  std::vector<std::string> p;
  for (const auto& b : bufs) p.push_back(absl::StrCat(b.is_output ? "float* " : "const float* ", b.name));
  if (cuda) p.push_back("void* stream");
  return absl::StrJoin(p, ", ");
}

}  // namespace

const char* FallbackLevelName(FallbackLevel level) {
  switch (level) {
    case FallbackLevel::kExactDevice: return "exact device";
    case FallbackLevel::kArchFamily: return "arch family";
    case FallbackLevel::kDefault: return "template default";
  }
  return "?";
}

std::string KernelFunctionName(const std::string& prefix, const std::string& workload_key) {
  // "matmul(M=512,N=512,K=512,dtype=float32)" -> prefix_matmul_M512_N512_K512
  std::string name = prefix + "_";
  std::string key = workload_key;
  const size_t dtype = key.find(",dtype=float32)");
  if (dtype != std::string::npos) key = key.substr(0, dtype) + ")";
  for (char c : key) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      name += c;
    } else if (c == '(' || c == ',') {
      name += '_';
    } else if (c == '=' || c == ')') {
      // the value follows its name directly: M512
    } else {
      name += '_';
    }
  }
  return name;
}

absl::StatusOr<std::vector<LibraryEntry>> WriteKernelLibrary(TuningLogClient& log, const LibraryOptions& o) {
  if (o.device_key.empty()) return absl::InvalidArgumentError("no device key given");
  if (!IsCIdentifier(o.prefix)) return absl::InvalidArgumentError(absl::StrCat("prefix '", o.prefix, "' is not a C identifier"));
  if (o.workloads.empty()) return absl::InvalidArgumentError("no workloads given");
  std::vector<kernels::Workload> workloads;
  std::set<std::string> seen;
  for (const std::string& text : o.workloads) {
    absl::StatusOr<kernels::Workload> w = kernels::ParseWorkload(text);
    if (!w.ok()) return w.status();
    if (!seen.insert(w->Key()).second) {
      return absl::InvalidArgumentError(absl::StrCat("workload ", w->Key(), " is listed twice"));
    }
    workloads.push_back(*w);
  }
  std::error_code ec;
  std::filesystem::create_directories(o.output_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", o.output_dir, ": ", ec.message()));
  const std::filesystem::path dir(o.output_dir);
  // The device class (unless given) and the architecture of the key from
  // its own records: the first listed workload it has one for.
  kernels::DeviceClass cls = o.device_class.value_or(kernels::DeviceClass::kCpu);
  std::string key_arch;
  for (const kernels::Workload& w : workloads) {
    absl::StatusOr<std::vector<BestConfig>> own = log.QueryBest(w.Key(), o.device_key, 1, "");
    if (!own.ok()) return own.status();
    if (own->empty()) continue;
    if (!o.device_class && TargetField(own->front().target_json, "kind") == "DEVICE_KIND_CUDA") {
      cls = kernels::DeviceClass::kCuda;
    }
    key_arch = TargetField(own->front().target_json, "arch");
    break;
  }
  const bool cuda = cls == kernels::DeviceClass::kCuda;
  // A GPU's family is its compute capability, known only from its records.
  const std::string family = cuda ? key_arch : FamilyOfKey(o.device_key);

  std::vector<Built> built;
  for (size_t i = 0; i < workloads.size(); ++i) {
    const kernels::Workload& w = workloads[i];
    const kernels::Template* found = kernels::TemplateRegistry::Global().Find(w.op, cls);
    if (found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.op, " has no ", std::string(kernels::DeviceClassName(cls)), " template (", w.Key(), ")"));
    }
    const kernels::Template& t = *found;
    absl::StatusOr<kernels::ConfigSpace> space = t.Space(w);
    if (!space.ok()) return space.status();
    absl::StatusOr<std::string> version = kernels::TemplateVersion(t, w);
    if (!version.ok()) return version.status();

    Built b{LibraryEntry{}, w, t.Buffers(w)};
    LibraryEntry& e = b.entry;
    e.workload = w.Key();
    e.function = KernelFunctionName(o.prefix, e.workload);
    e.source = absl::StrCat("kernel_", i, cuda ? ".cu" : ".c");
    absl::StatusOr<std::vector<BestConfig>> exact = log.QueryBest(e.workload, o.device_key, 1, *version);
    if (!exact.ok()) return exact.status();
    if (!exact->empty()) {
      e.level = FallbackLevel::kExactDevice;
      e.record = exact->front();
    } else {
      absl::StatusOr<std::vector<BestConfig>> stale = log.QueryBest(e.workload, o.device_key, 1, "");
      if (!stale.ok()) return stale.status();
      e.why = stale->empty() ? absl::StrCat("never tuned on ", o.device_key)
                             : absl::StrCat("only records of another template version on ", o.device_key);
      absl::StatusOr<std::vector<BestConfig>> any = log.QueryBest(e.workload, "", 1000, *version);
      if (!any.ok()) return any.status();
      for (const BestConfig& r : *any) {
        if (r.device_key != o.device_key && !family.empty() && FamilyOfTarget(r.target_json) == family) {
          e.level = FallbackLevel::kArchFamily;
          e.record = r;
          absl::StrAppend(&e.why, "; using ", r.device_key, " (", family, ")");
          break;
        }
      }
      if (!e.record) {
        absl::StrAppend(&e.why, family.empty() ? absl::StrCat("; no record says what architecture ", o.device_key, " is")
                                               : absl::StrCat("; none on another ", family, " device either"));
      }
    }
    if (e.record && e.record->config_index >= space->size()) {
      return absl::DataLossError(absl::StrCat("record ", e.record->record_id, " has a config index outside the space"));
    }
    const kernels::Config config =
        e.record ? space->FromIndex(e.record->config_index) : t.DefaultConfig(w, *space);
    e.config = space->ToString(config);
    absl::StatusOr<kernels::Kernel> kernel = t.Instantiate(w, *space, config);
    if (!kernel.ok()) return kernel.status();
    const std::string impl = e.function + "_impl";
    kernel->func.name = impl;
    std::string code, flags, wrapper;
    if (!cuda) {
      absl::StatusOr<std::string> src = kernels::GenerateC(kernel->func);
      if (!src.ok()) return src.status();
      // The entry point stays inside its file; the typed wrapper is public.
      code = absl::StrReplaceAll(*src, {{absl::StrCat("\nvoid ", impl, "("), absl::StrCat("\nstatic void ", impl, "(")}});
      flags = absl::StrCat("-std=gnu11 -march=native ", kernel->compile.flags);
      wrapper = absl::StrCat("\nvoid ", e.function, "(", TypedParams(b.buffers, false), ") {\n  void* args[",
                             b.buffers.size(), "] = {");
      for (size_t k = 0; k < b.buffers.size(); ++k) absl::StrAppend(&wrapper, k ? ", " : "", "(void*)", b.buffers[k].name);
      absl::StrAppend(&wrapper, "};\n  ", impl, "(args);\n}\n");
    } else {
      absl::StatusOr<kernels::CudaKernelSource> src = kernels::GenerateCuda(kernel->func);
      if (!src.ok()) return src.status();
      // The source is written for NVRTC, which has no system headers, so it
      // defines its own int64_t; a namespace keeps that from meeting the
      // one nvcc's headers declare.
      const std::string ns = absl::StrCat(e.function, "_ns");
      code = absl::StrCat("namespace ", ns, " {\n", src->source, "}  // namespace ", ns, "\n");
      // For the GPU the record was measured on, or one of the key's family.
      const std::string arch = e.record ? TargetField(e.record->target_json, "arch") : family;
      // An architecture-specific kernel (wgmma: sm_90a) is built for that
      // machine code alone: nvcc's -arch=sm_90a would embed compute_90 PTX
      // as well, which cannot express it.
      flags = arch.empty()         ? "-O3 -arch=native"
              : src->arch_specific ? absl::StrCat("-O3 -gencode arch=compute_", src->CompileArch(arch).substr(3),
                                                  ",code=", src->CompileArch(arch))
                                   : absl::StrCat("-O3 -arch=", arch);
      wrapper = absl::StrCat("\nextern \"C\" int ", e.function, "(", TypedParams(b.buffers, true), ") {\n");
      if (src->dynamic_shared_bytes > 0) {
        // Dynamic shared memory past 48 KiB is granted per function, once.
        absl::StrAppend(&wrapper, "  static const cudaError_t allowed = cudaFuncSetAttribute(", ns, "::", src->entry,
                        ", cudaFuncAttributeMaxDynamicSharedMemorySize, ", src->dynamic_shared_bytes,
                        ");\n  if (allowed != cudaSuccess) return (int)allowed;\n");
      }
      absl::StrAppend(&wrapper, "  ", ns, "::", src->entry, "<<<dim3(", absl::StrJoin(src->grid, ", "), "), dim3(",
                      absl::StrJoin(src->block, ", "), "), ", src->dynamic_shared_bytes, ", (cudaStream_t)stream>>>(");
      for (size_t k = 0; k < b.buffers.size(); ++k) absl::StrAppend(&wrapper, k ? ", " : "", b.buffers[k].name);
      absl::StrAppend(&wrapper, ");\n  return (int)cudaGetLastError();\n}\n");
      b.exclusive = src->module_bytes > 0;
    }

    std::string head = absl::StrCat("// tunefarm kernel for ", e.workload, "\n// device key:  ", o.device_key, "\n",
                                    "// source:      ", FallbackLevelName(e.level),
                                    e.why.empty() ? "" : absl::StrCat(" (", e.why, ")"), "\n");
    if (e.record) {
      const BestConfig& r = *e.record;
      absl::StrAppend(&head, "// measured on: ", r.device_key, "\n// target:      ", OneLine(r.target_json), "\n",
                      "// record:      ", r.record_id, ", ", UtcTime(r.timestamp_ms), ", fastest run ", r.seconds,
                      " s (", r.gflops, " GFLOP/s)\n", "// toolchain:   ", OneLine(r.toolchain), "\n");
    }
    absl::StrAppend(&head, "// template:    ", std::string(t.op()), " version ", *version, " (", std::string(t.declared_version()), ")\n",
                    "// config:      ", e.config, "\n",
                    cuda ? absl::StrCat("// build with:  nvcc ", flags, "\n")
                         : absl::StrCat("// tuned with:  ", kernel->compile.compiler, " ", flags, "\n"));
    if (absl::Status s = WriteFile(dir / e.source, head + code + wrapper); !s.ok()) return s;
    if (absl::Status s = WriteFile(dir / absl::StrCat("kernel_", i, ".flags"), flags + "\n"); !s.ok()) return s;
    built.push_back(std::move(b));
  }

  // --- the header and the dispatchers ---
  std::string guard;
  for (char c : o.prefix) guard += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  guard += "_KERNELS_H_";
  std::string h = absl::StrCat("// Generated by `tunefarm export --format library` for device ", o.device_key,
                               ". Do not edit.\n#ifndef ", guard, "\n#define ", guard, "\n\n#include <stdint.h>\n\n",
                               "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  std::string d = absl::StrCat("// Generated by tunefarm. Do not edit.\n#include <string.h>\n\n#include \"", o.prefix,
                               "_kernels.h\"\n\n");
  std::map<std::string, std::vector<const Built*>> by_op;
  for (const Built& b : built) {
    const LibraryEntry& e = b.entry;
    absl::StrAppend(&h, "// ", e.workload, ": ", FallbackLevelName(e.level));
    if (e.record) absl::StrAppend(&h, ", record ", e.record->record_id, " of ", e.record->device_key);
    absl::StrAppend(&h, "\n// buffers:");
    for (const auto& buf : b.buffers) {
      absl::StrAppend(&h, " ", buf.name, "[", buf.elements, "]", buf.is_output ? " (out)" : "");
    }
    if (b.exclusive) {
      absl::StrAppend(&h,
                      "\n// split-K: keeps its partial sums in device memory of its own, so calls of it must\n"
                      "// not overlap (one stream at a time, or synchronise between them)");
    }
    absl::StrAppend(&h, cuda ? "\nint " : "\nvoid ", e.function, "(", TypedParams(b.buffers, cuda), ");\n\n");
    by_op[b.workload.op].push_back(&b);
  }
  absl::StrAppend(&h, "// Dispatchers by shape: run the library's kernel for the given parameters\n",
                  cuda ? "// (device buffers in the order above, on `stream`) and return what it\n"
                         "// returns, or return -1 when the library has no kernel for them.\n"
                       : "// (buffers in the order above) and return 0, or return -1 when the\n"
                         "// library has no kernel for them.\n");
  // The statement that runs a kernel and returns from a dispatcher.
  auto call = [&](const Built& b) {
    std::string c = absl::StrCat(b.entry.function, "(");
    for (size_t k = 0; k < b.buffers.size(); ++k) {
      absl::StrAppend(&c, k ? ", " : "", b.buffers[k].is_output ? "(float*)" : "(const float*)", "args[", k, "]");
    }
    return cuda ? absl::StrCat("return ", c, ", stream);") : absl::StrCat(c, ");\n    return 0;");
  };
  for (const auto& [op, list] : by_op) {
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(op, cls);
    std::vector<std::string> params;
    for (const std::string& p : t.ParamNames()) params.push_back("int64_t " + p);
    for (const auto& [p, _] : t.OptionalParams()) params.push_back("int64_t " + p);
    for (const kernels::TextParamSpec& p : t.TextParams()) params.push_back("const char* " + p.name);
    params.push_back("void* const* args");
    if (cuda) params.push_back("void* stream");
    const std::string sig = absl::StrCat("int ", o.prefix, "_", op, "(", absl::StrJoin(params, ", "), ")");
    absl::StrAppend(&h, sig, ";\n");
    absl::StrAppend(&d, sig, " {\n");
    for (const Built* b : list) {
      std::vector<std::string> conds;
      for (const std::string& p : t.ParamNames()) conds.push_back(absl::StrCat(p, " == ", b->workload.param(p)));
      for (const auto& [p, def] : t.OptionalParams()) conds.push_back(absl::StrCat(p, " == ", b->workload.param_or(p, def)));
      for (const kernels::TextParamSpec& p : t.TextParams()) {
        conds.push_back(absl::StrCat("strcmp(", p.name, ", \"", b->workload.text(p.name), "\") == 0"));
      }
      absl::StrAppend(&d, "  if (", absl::StrJoin(conds, " && "), ") {\n    ", call(*b), "\n  }\n");
    }
    absl::StrAppend(&d, "  return -1;\n}\n\n");
  }
  const std::string run_sig = absl::StrCat("int ", o.prefix, "_run(const char* workload_key, void* const* args",
                                           cuda ? ", void* stream)" : ")");
  absl::StrAppend(&h, "// The same by canonical workload key, e.g. \"", built.front().entry.workload, "\".\n", run_sig,
                  ";\n\n// The workloads of this library, in list order.\nextern const int ", o.prefix,
                  "_kernel_count;\nextern const char* const ", o.prefix, "_kernel_workloads[];\n\n",
                  "#ifdef __cplusplus\n}  // extern \"C\"\n#endif\n#endif  // ", guard, "\n");
  absl::StrAppend(&d, run_sig, " {\n");
  for (const Built& b : built) {
    absl::StrAppend(&d, "  if (strcmp(workload_key, \"", b.entry.workload, "\") == 0) {\n    ", call(b), "\n  }\n");
  }
  absl::StrAppend(&d, "  return -1;\n}\n\nconst int ", o.prefix, "_kernel_count = ", built.size(), ";\n",
                  "const char* const ", o.prefix, "_kernel_workloads[] = {\n");
  for (const Built& b : built) absl::StrAppend(&d, "    \"", b.entry.workload, "\",\n");
  absl::StrAppend(&d, "};\n");
  if (absl::Status s = WriteFile(dir / (o.prefix + "_kernels.h"), h); !s.ok()) return s;
  if (absl::Status s = WriteFile(dir / (o.prefix + "_dispatch.c"), d); !s.ok()) return s;

  std::vector<LibraryEntry> out;
  for (Built& b : built) out.push_back(std::move(b.entry));
  return out;
}

}  // namespace tunefarm::tuner
