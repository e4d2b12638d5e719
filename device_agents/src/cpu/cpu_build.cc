#include "tunefarm/device_agents/cpu_build.h"

#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tunefarm/kernels/codegen_c.h"

namespace tunefarm::device_agents {

absl::StatusOr<CpuToolchain> DetectCpuToolchain(ProcessLauncher& launcher) {
  // Knob value -> executables to try; clang is preferred, gcc the fallback.
  const std::pair<const char*, std::vector<const char*>> wanted[] = {
      {"clang", {"clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14"}},
      {"gcc", {"gcc", "cc"}},
  };
  CpuToolchain tc;
  for (const auto& [knob, names] : wanted) {
    for (const char* name : names) {
      std::string path = FindExecutable(name);
      if (path.empty()) continue;
      ProcessOptions po;
      po.timeout = std::chrono::milliseconds(10000);
      absl::StatusOr<ProcessResult> p = launcher.Run({path, "--version"}, po);
      if (!p.ok() || !p->ok()) continue;
      std::string version = p->out.substr(0, p->out.find('\n'));
      tc.compilers[knob] = {path, version};
      absl::StrAppend(&tc.fingerprint, tc.fingerprint.empty() ? "" : "; ", knob, ": ", version);
      break;
    }
  }
  if (tc.compilers.empty()) {
    return absl::FailedPreconditionError("no C compiler found on PATH (install clang or gcc)");
  }
  return tc;
}

std::vector<std::string> CpuCompileCommand(const CpuCompiler& compiler, const kernels::CompileSpec& spec,
                                           const std::string& src, const std::string& so) {
  std::vector<std::string> argv = {compiler.path, "-std=gnu11", "-march=native", "-fPIC", "-shared", "-w"};
  for (absl::string_view f : absl::StrSplit(spec.flags, ' ', absl::SkipEmpty())) argv.emplace_back(f.data(), f.size());
  argv.insert(argv.end(), {"-o", so, src});
  return argv;
}

absl::Status BuildCpuKernel(const kernels::Workload& workload, uint64_t config_index, const std::string& so) {
  const kernels::Template* t = kernels::TemplateRegistry::Global().Find(workload.op);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no template for ", workload.op));
  absl::StatusOr<kernels::ConfigSpace> space = t->Space(workload);
  if (!space.ok()) return space.status();
  if (config_index >= space->size()) return absl::InvalidArgumentError("config index outside the space");
  absl::StatusOr<kernels::Kernel> k = t->Instantiate(workload, *space, space->FromIndex(config_index));
  if (!k.ok()) return k.status();
  absl::StatusOr<std::string> src = kernels::GenerateC(k->func);
  if (!src.ok()) return src.status();
  std::string src_path = so + ".c";
  FILE* f = std::fopen(src_path.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", src_path));
  bool written = std::fwrite(src->data(), 1, src->size(), f) == src->size();
  written = std::fclose(f) == 0 && written;
  if (!written) return absl::InternalError(absl::StrCat("cannot write ", src_path));
  std::shared_ptr<ProcessLauncher> launcher = NewPosixProcessLauncher();
  absl::StatusOr<CpuToolchain> tc = DetectCpuToolchain(*launcher);
  if (!tc.ok()) return tc.status();
  auto it = tc->compilers.find(k->compile.compiler);
  if (it == tc->compilers.end()) {
    return absl::FailedPreconditionError(absl::StrCat("compiler ", k->compile.compiler, " is not installed"));
  }
  ProcessOptions po;
  po.timeout = std::chrono::milliseconds(120000);
  absl::StatusOr<ProcessResult> p = launcher->Run(CpuCompileCommand(it->second, k->compile, src_path, so), po);
  if (!p.ok()) return p.status();
  if (!p->ok()) return absl::InternalError(absl::StrCat("compile failed (", p->Describe(), "): ", p->err));
  return absl::OkStatus();
}

}  // namespace tunefarm::device_agents
