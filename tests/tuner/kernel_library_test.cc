// Kernel libraries from a real SQLite tuning log whose records are written
// by the test: which config each workload gets, the provenance written with
// it, and that the generated library compiles with a real compiler and
// computes what each template's reference does.
#include "tunefarm/tuner/kernel_library.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tunefarm/database/database.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/tuner/client.h"

namespace tunefarm::tuner {
namespace {

const char* kExact = "matmul(M=33,N=40,K=17)";
const char* kFamily = "conv2d(N=1,C=5,H=7,W=9,K=6,R=3,S=3,stride=1,pad=1,bias=1,layout=NCHW)";
const char* kNone = "depthwise_conv2d(N=1,C=7,H=8,W=8,R=3,S=3,stride=2,pad=1,layout=NHWC)";

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class KernelLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tunefarm-library-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto db = database::Database::Open((dir_ / "log.db").string());
    ASSERT_TRUE(db.ok()) << db.status();
    std::vector<database::RecordRow> rows;
    // kExact: two records on the device (the faster wins); kFamily: one on
    // another device of the same ISA level and a faster one on an ARM
    // device (another family); kNone: only a record of an older template
    // version on the device.
    rows.push_back(Row(kExact, "lab-xeon-avx512", "x86_64-avx512", 11, 2e-6));
    rows.push_back(Row(kExact, "lab-xeon-avx512", "x86_64-avx512", 12, 1e-6));
    rows.push_back(Row(kFamily, "lab-epyc-avx512", "x86_64-avx512", 21, 3e-6));
    rows.push_back(Row(kFamily, "lab-graviton-neon", "aarch64-neon", 22, 1e-7));
    database::RecordRow stale = Row(kNone, "lab-xeon-avx512", "x86_64-avx512", 31, 1e-6);
    stale.template_version = "0123456789abcdef";
    rows.push_back(stale);
    auto added = (*db)->AddRecords(rows);
    ASSERT_TRUE(added.ok()) << added.status();
    ASSERT_EQ(*added, 5);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A successful record of the `pick`-th single-threaded config.
  database::RecordRow Row(const char* text, const char* key, const char* arch, uint64_t pick, double seconds) {
    auto w = kernels::ParseWorkload(text);
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
    auto space = t.Space(*w);
    auto serial = space->Pin({{"threads", int64_t{1}}});
    database::RecordRow r;
    r.workload_key = w->Key();
    r.device_key = key;
    r.target_json = std::string("{\"kind\":\"DEVICE_KIND_CPU\",\"arch\":\"") + arch + "\",\"device_key\":\"" + key + "\"}";
    r.toolchain = "clang: test";
    r.template_name = w->op;
    r.template_version = *kernels::TemplateVersion(t, *w);
    r.config_index = serial->ToParentIndex(pick * 7919 % serial->size());
    r.config_json = "{}";
    r.costs = {seconds};
    r.agent_id = "test";
    configs_[std::string(text) + "@" + key] = r.config_index;
    return r;
  }

  std::filesystem::path dir_;
  std::map<std::string, uint64_t> configs_;
};

TEST_F(KernelLibraryTest, FallbackChainProvenanceAndCorrectKernels) {
  auto log = TuningLogClient::OpenFile((dir_ / "log.db").string());
  ASSERT_TRUE(log.ok()) << log.status();
  LibraryOptions o;
  o.device_key = "lab-xeon-avx512";
  o.workloads = {kExact, kFamily, kNone};
  o.output_dir = (dir_ / "lib").string();
  auto entries = WriteKernelLibrary(**log, o);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);

  const LibraryEntry& exact = (*entries)[0];
  EXPECT_EQ(exact.level, FallbackLevel::kExactDevice);
  ASSERT_TRUE(exact.record);
  EXPECT_EQ(exact.record->config_index, configs_[std::string(kExact) + "@lab-xeon-avx512"]);
  EXPECT_EQ(exact.record->device_key, "lab-xeon-avx512");

  const LibraryEntry& family = (*entries)[1];
  EXPECT_EQ(family.level, FallbackLevel::kArchFamily);
  ASSERT_TRUE(family.record);
  EXPECT_EQ(family.record->device_key, "lab-epyc-avx512");  // not the faster ARM record
  EXPECT_EQ(family.record->config_index, configs_[std::string(kFamily) + "@lab-epyc-avx512"]);
  EXPECT_NE(family.why.find("never tuned on lab-xeon-avx512"), std::string::npos) << family.why;

  const LibraryEntry& none = (*entries)[2];
  EXPECT_EQ(none.level, FallbackLevel::kDefault);
  EXPECT_FALSE(none.record);
  EXPECT_NE(none.why.find("another template version"), std::string::npos) << none.why;

  // Provenance: each kernel names where its config came from.
  const std::string k0 = ReadAll(dir_ / "lib" / "kernel_0.c");
  EXPECT_NE(k0.find("// source:      exact device"), std::string::npos);
  EXPECT_NE(k0.find("// record:      " + std::to_string(exact.record->record_id) + ", "), std::string::npos);
  EXPECT_NE(k0.find("// config:      " + exact.config), std::string::npos);
  EXPECT_NE(k0.find("x86_64-avx512"), std::string::npos);
  EXPECT_NE(ReadAll(dir_ / "lib" / "kernel_2.c").find("// source:      template default"), std::string::npos);
  const std::string header = ReadAll(dir_ / "lib" / "tunefarm_kernels.h");
  EXPECT_NE(header.find("void tunefarm_matmul_M33_N40_K17(const float* A, const float* B, float* C);"),
            std::string::npos)
      << header;
  EXPECT_NE(header.find("int tunefarm_conv2d("), std::string::npos);

  // Build it as a shared library with each kernel's own flags.
  std::string objects;
  for (int i = 0; i < 3; ++i) {
    const std::string obj = (dir_ / ("k" + std::to_string(i) + ".o")).string();
    const std::string cmd = "cc -c -fPIC -fopenmp @" + (dir_ / "lib" / ("kernel_" + std::to_string(i) + ".flags")).string() +
                            " " + (dir_ / "lib" / ("kernel_" + std::to_string(i) + ".c")).string() + " -o " + obj;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    objects += " " + obj;
  }
  const std::string so = (dir_ / "libkernels.so").string();
  const std::string link = "cc -shared -fPIC -fopenmp -std=gnu11 -I" + (dir_ / "lib").string() + " " +
                           (dir_ / "lib" / "tunefarm_dispatch.c").string() + objects + " -o " + so;
  ASSERT_EQ(std::system(link.c_str()), 0) << link;
  void* lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  using RunFn = int (*)(const char*, void* const*);
  auto run = reinterpret_cast<RunFn>(dlsym(lib, "tunefarm_run"));
  ASSERT_NE(run, nullptr);
  EXPECT_EQ(*reinterpret_cast<const int*>(dlsym(lib, "tunefarm_kernel_count")), 3);

  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (const LibraryEntry& e : *entries) {
    auto w = kernels::ParseWorkload(e.workload);
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op);
    std::vector<std::vector<float>> bufs;
    std::vector<std::span<const float>> inputs;
    for (const auto& b : t.Buffers(*w)) {
      bufs.emplace_back(b.elements);
      if (!b.is_output) {
        for (float& x : bufs.back()) x = dist(rng);
      }
    }
    std::vector<void*> args;
    for (auto& b : bufs) args.push_back(b.data());
    for (size_t i = 0; i + 1 < bufs.size(); ++i) inputs.emplace_back(bufs[i]);
    ASSERT_EQ(run(e.workload.c_str(), args.data()), 0) << e.workload;
    std::vector<kernels::ReferenceOutput> ref = t.Reference(*w, inputs);
    const std::vector<float>& out = bufs.back();
    int wrong = 0;
    for (size_t i = 0; i < out.size(); ++i) wrong += std::fabs(out[i] - ref[0].expected[i]) > ref[0].tolerance[i];
    EXPECT_EQ(wrong, 0) << e.workload;
  }
  EXPECT_EQ(run("matmul(M=1,N=1,K=1,dtype=float32)", nullptr), -1);
  // The dispatcher by shape finds the matmul, and nothing for another shape.
  // (M, N, K, trans_b, bias, relu, tf32, args)
  using MatmulFn = int (*)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, void* const*);
  auto matmul = reinterpret_cast<MatmulFn>(dlsym(lib, "tunefarm_matmul"));
  ASSERT_NE(matmul, nullptr);
  std::vector<float> a(33 * 17), b(17 * 40), c(33 * 40);
  void* margs[3] = {a.data(), b.data(), c.data()};
  EXPECT_EQ(matmul(33, 40, 17, 0, 0, 0, 0, margs), 0);
  EXPECT_EQ(matmul(33, 40, 18, 0, 0, 0, 0, margs), -1);
  dlclose(lib);
}

// A GPU's records give a CUDA library: for each workload the __global__
// kernel and a host function that launches it on a stream, built with nvcc
// for the measured GPU's compute capability; a record of another GPU of the
// same capability stands in for a missing one. The sources are compiled
// and linked with nvcc when the CUDA toolkit is present (no GPU needed).
TEST_F(KernelLibraryTest, GpuRecordsGiveACudaLibrary) {
  const char* mm = "matmul(M=64,N=72,K=40,bias=1)";
  const char* conv = "conv2d(N=1,C=16,H=8,W=8,K=32,R=3,S=3,stride=1,pad=1,layout=NHWC)";
  const char* deep = "matmul(M=32,N=48,K=512)";  // recorded with split-K
  const char* wide = "matmul(M=128,N=256,K=96,tf32=1)";  // with wgmma, in dynamic shared memory
  using Knobs = std::vector<std::pair<std::string, kernels::KnobValue>>;
  auto gpu_row = [&](const char* text, const char* key, const Knobs& knobs = {}) {
    auto w = kernels::ParseWorkload(text);
    const kernels::Template& t = *kernels::TemplateRegistry::Global().Find(w->op, kernels::DeviceClass::kCuda);
    auto space = t.Space(*w);
    database::RecordRow r;
    r.workload_key = w->Key();
    r.device_key = key;
    r.target_json = std::string("{\"kind\":\"DEVICE_KIND_CUDA\",\"arch\":\"sm_90\",\"device_key\":\"") + key + "\"}";
    r.toolchain = "NVRTC 13.0; CUDA driver 13.0";
    r.template_name = w->op;
    r.template_version = *kernels::TemplateVersion(t, *w);
    auto config = space->With(t.DefaultConfig(*w, *space), knobs);
    EXPECT_TRUE(config.ok()) << config.status();
    r.config_index = config->index;
    r.config_json = "{}";
    r.costs = {1e-5};
    r.agent_id = "test";
    return r;
  };
  {
    auto db = database::Database::Open((dir_ / "log.db").string());
    ASSERT_TRUE(db.ok());
    const Knobs wgmma = {{"bm", int64_t{128}},  {"bn", int64_t{256}},   {"bk", int64_t{32}},
                         {"tm", int64_t{8}},    {"tn", int64_t{16}},    {"warp_x", int64_t{16}},
                         {"split", int64_t{1}}, {"stages", int64_t{4}}, {"mma", int64_t{2}}};
    auto added =
        (*db)->AddRecords({gpu_row(mm, "lab-h100"), gpu_row(conv, "lab-h200"),
                           gpu_row(deep, "lab-h100", {{"split_k", int64_t{3}}}), gpu_row(wide, "lab-h100", wgmma)});
    ASSERT_TRUE(added.ok()) << added.status();
  }
  auto log = TuningLogClient::OpenFile((dir_ / "log.db").string());
  ASSERT_TRUE(log.ok());
  LibraryOptions o;
  o.device_key = "lab-h100";
  o.workloads = {mm, conv, deep, wide};
  o.output_dir = (dir_ / "gpu").string();
  auto entries = WriteKernelLibrary(**log, o);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 4u);
  EXPECT_NE((*entries)[2].config.find("split_k=3"), std::string::npos) << (*entries)[2].config;
  EXPECT_EQ((*entries)[0].level, FallbackLevel::kExactDevice);
  EXPECT_EQ((*entries)[0].source, "kernel_0.cu");
  EXPECT_EQ((*entries)[1].level, FallbackLevel::kArchFamily) << (*entries)[1].why;
  ASSERT_TRUE((*entries)[1].record);
  EXPECT_EQ((*entries)[1].record->device_key, "lab-h200");

  const std::string k0 = ReadAll(dir_ / "gpu" / "kernel_0.cu");
  EXPECT_NE(k0.find("__global__"), std::string::npos);
  EXPECT_NE(k0.find("extern \"C\" int tunefarm_matmul_M64_N72_K40_bias1(const float* A, const float* B, "
                    "const float* bias, float* C, void* stream) {"),
            std::string::npos)
      << k0;
  EXPECT_NE(k0.find("(cudaStream_t)stream>>>(A, B, bias, C);"), std::string::npos) << k0;
  EXPECT_EQ(ReadAll(dir_ / "gpu" / "kernel_1.flags"), "-O3 -arch=sm_90\n");
  // The wgmma kernel: for sm_90a machine code alone, its 192 KiB of dynamic
  // shared memory granted before the launch that asks for it.
  const std::string k3 = ReadAll(dir_ / "gpu" / "kernel_3.cu");
  EXPECT_EQ(ReadAll(dir_ / "gpu" / "kernel_3.flags"), "-O3 -gencode arch=compute_90a,code=sm_90a\n");
  EXPECT_NE(k3.find("cudaFuncAttributeMaxDynamicSharedMemorySize, 196608);"), std::string::npos) << k3;
  EXPECT_NE(k3.find("), 196608, (cudaStream_t)stream>>>(A, B, C);"), std::string::npos) << k3;
  const std::string header = ReadAll(dir_ / "gpu" / "tunefarm_kernels.h");
  EXPECT_NE(header.find("int tunefarm_run(const char* workload_key, void* const* args, void* stream);"),
            std::string::npos)
      << header;
  EXPECT_NE(header.find("int tunefarm_conv2d("), std::string::npos);
  // The split-K kernel's calls must not overlap; the others' may.
  EXPECT_NE(header.find("must\n// not overlap (one stream at a time, or synchronise between them)\nint "
                        "tunefarm_matmul_M32_N48_K512("),
            std::string::npos)
      << header;
  EXPECT_EQ(header.find("not overlap"), header.rfind("not overlap")) << header;

  // The same log read for a CPU, and an operator the GPU has no template for.
  o.device_class = kernels::DeviceClass::kCpu;
  o.output_dir = (dir_ / "cpu").string();
  auto cpu = WriteKernelLibrary(**log, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)[0].source, "kernel_0.c");
  EXPECT_EQ((*cpu)[0].level, FallbackLevel::kDefault);
  o.device_class.reset();
  o.workloads = {mm, "batch_matmul(B=2,M=8,N=8,K=8)"};
  auto none = WriteKernelLibrary(**log, o);
  EXPECT_NE(std::string(none.status().message()).find("batch_matmul has no cuda template"), std::string::npos)
      << none.status();

  std::string nvcc;
  for (const char* c : {"/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc"}) {
    if (std::filesystem::exists(c)) nvcc = c;
  }
  if (nvcc.empty()) GTEST_SKIP() << "no nvcc (tried /usr/local/cuda/bin/nvcc, /usr/bin/nvcc): sources not compiled";
  std::string objects;
  for (int i = 0; i < 4; ++i) {
    const std::filesystem::path lib = dir_ / "gpu";
    const std::string obj = (dir_ / ("g" + std::to_string(i) + ".o")).string();
    const std::string cmd = nvcc + " -c -Xcompiler -fPIC --options-file " +
                            (lib / ("kernel_" + std::to_string(i) + ".flags")).string() + " " +
                            (lib / ("kernel_" + std::to_string(i) + ".cu")).string() + " -o " + obj;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    objects += " " + obj;
  }
  const std::string dispatch = (dir_ / "dispatch.o").string();
  const std::string cc = "cc -c -fPIC -std=gnu11 -I" + (dir_ / "gpu").string() + " " +
                         (dir_ / "gpu" / "tunefarm_dispatch.c").string() + " -o " + dispatch;
  ASSERT_EQ(std::system(cc.c_str()), 0) << cc;
  const std::string link = nvcc + " -shared " + dispatch + objects + " -o " + (dir_ / "libgpu.so").string();
  ASSERT_EQ(std::system(link.c_str()), 0) << link;
}

TEST_F(KernelLibraryTest, BadRequests) {
  auto log = TuningLogClient::OpenFile((dir_ / "log.db").string());
  ASSERT_TRUE(log.ok());
  LibraryOptions o;
  o.device_key = "lab-xeon-avx512";
  o.output_dir = (dir_ / "lib").string();
  EXPECT_EQ(WriteKernelLibrary(**log, o).status().code(), absl::StatusCode::kInvalidArgument);  // no workloads
  o.workloads = {kExact, "matmul(K=17,N=40,M=33)"};
  auto twice = WriteKernelLibrary(**log, o);
  EXPECT_NE(std::string(twice.status().message()).find("listed twice"), std::string::npos) << twice.status();
  o.workloads = {"matmul(M=0,N=1,K=1)"};
  EXPECT_EQ(WriteKernelLibrary(**log, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.workloads = {kExact};
  o.prefix = "9lives";
  EXPECT_EQ(WriteKernelLibrary(**log, o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TuningLogClient::OpenFile((dir_ / "missing.db").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KernelLibraryTest, ClientQueriesTheLog) {
  auto log = TuningLogClient::OpenFile((dir_ / "log.db").string());
  ASSERT_TRUE(log.ok());
  auto best = (*log)->QueryBest(" matmul( K=17, M=33, N=40 )", "lab-xeon-avx512", 2);
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->size(), 2u);
  EXPECT_EQ((*best)[0].seconds, 1e-6);
  EXPECT_EQ((*best)[0].workload, "matmul(M=33,N=40,K=17,dtype=float32)");
  EXPECT_GT((*best)[0].gflops, 0);
  EXPECT_EQ((*best)[1].seconds, 2e-6);
  auto current = CurrentTemplateVersion(kNone);
  ASSERT_TRUE(current.ok());
  // A GPU's records of the same workload come from the CUDA template.
  auto on_cpu = CurrentTemplateVersion("matmul(M=33,N=40,K=17)", "cpu");
  auto on_gpu = CurrentTemplateVersion("matmul(M=33,N=40,K=17)", "cuda");
  ASSERT_TRUE(on_cpu.ok() && on_gpu.ok()) << on_gpu.status();
  EXPECT_NE(*on_gpu, *on_cpu);
  EXPECT_EQ(CurrentTemplateVersion(kNone, "gpu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CurrentTemplateVersion(kNone, "cuda").status().code(), absl::StatusCode::kNotFound);
  auto none = (*log)->QueryBest(kNone, "lab-xeon-avx512", 1, *current);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ((*log)->QueryBest("matmul(M=1)", "lab-xeon-avx512").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*log)->QueryBest(kExact, "lab-xeon-avx512", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tunefarm::tuner
