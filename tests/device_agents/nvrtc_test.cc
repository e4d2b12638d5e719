#include "tunefarm/device_agents/nvrtc.h"

#include <gtest/gtest.h>

#include "../kernels/cuda_test_kernels.h"
#include "tunefarm/kernels/codegen_cuda.h"

namespace tunefarm::device_agents {
namespace {

// The CUDA printer's output is real CUDA: NVRTC compiles it for Ampere and
// Hopper. Skipped, saying so, where the CUDA toolkit is not installed.
TEST(NvrtcTest, GeneratedKernelsCompileForSm80AndSm90) {
  absl::StatusOr<std::unique_ptr<Nvrtc>> nvrtc = Nvrtc::Load();
  if (!nvrtc.ok()) GTEST_SKIP() << nvrtc.status().message();
  EXPECT_NE((*nvrtc)->version(), "unknown");
  absl::StatusOr<kernels::CudaKernelSource> k = kernels::GenerateCuda(kernels::TiledMatmulForTest(64, 48, 32, 16));
  ASSERT_TRUE(k.ok()) << k.status();
  for (const char* arch : {"compute_80", "compute_90"}) {
    absl::StatusOr<std::string> ptx = (*nvrtc)->CompileToPtx(k->source, "tiled_matmul.cu", arch);
    ASSERT_TRUE(ptx.ok()) << arch << ": " << ptx.status() << "\n" << k->source;
    EXPECT_NE(ptx->find(".entry tiled_matmul"), std::string::npos) << arch;
    EXPECT_NE(ptx->find("bar.sync"), std::string::npos) << arch;
    EXPECT_NE(ptx->find(std::string(".target sm_") + (arch + 8)), std::string::npos) << arch;
  }
}

TEST(NvrtcTest, ARejectedSourceComesBackWithTheCompilerLog) {
  absl::StatusOr<std::unique_ptr<Nvrtc>> nvrtc = Nvrtc::Load();
  if (!nvrtc.ok()) GTEST_SKIP() << nvrtc.status().message();
  absl::StatusOr<std::string> ptx =
      (*nvrtc)->CompileToPtx("extern \"C\" __global__ void k(float* y) { y[0] = undeclared; }", "bad.cu", "compute_90");
  ASSERT_FALSE(ptx.ok());
  EXPECT_EQ(ptx.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(ptx.status().message()).find("undeclared"), std::string::npos) << ptx.status();
}

}  // namespace
}  // namespace tunefarm::device_agents
