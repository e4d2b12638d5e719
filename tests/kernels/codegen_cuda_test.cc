#include "tunefarm/kernels/codegen_cuda.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "cuda_test_kernels.h"

namespace tunefarm::kernels {
namespace {

using namespace ir;  // NOLINT

// Golden text of the shared-memory tiled matmul (cuda_test_kernels.h);
// TUNEFARM_UPDATE_GOLDEN=1 rewrites it instead.
TEST(CodegenCudaTest, GoldenTiledMatmul) {
  absl::StatusOr<CudaKernelSource> k = GenerateCuda(TiledMatmulForTest(64, 48, 32, 16));
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->entry, "tiled_matmul");
  EXPECT_EQ(k->grid, (std::array<int64_t, 3>{4, 3, 1}));  // by (M/16) innermost on x, bx (N/16) on y
  EXPECT_EQ(k->block, (std::array<int64_t, 3>{16, 16, 1}));
  EXPECT_EQ(k->shared_bytes, 2 * 16 * 16 * 4);
  const std::string path = std::string(TUNEFARM_GOLDEN_DIR) + "/cuda_tiled_matmul.cu";
  if (std::getenv("TUNEFARM_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << k->source;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing golden " << path;
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(k->source, want.str());
  EXPECT_EQ(k->source.find("#include"), std::string::npos);  // NVRTC has no system headers
  EXPECT_NE(k->source.find("__syncthreads();"), std::string::npos);
  EXPECT_NE(k->source.find("__shared__ __align__(16) float As[256];"), std::string::npos);
  EXPECT_NE(k->source.find("const int64_t tx = (int64_t)threadIdx.x;"), std::string::npos);
}

TEST(CodegenCudaTest, WhatCudaCannotExpressIsAnError) {
  auto fails = [](Stmt body, const std::string& needle) {
    LoweredFunc f{"k", {{"Y", Type::Float(), 64, true}}, body};
    absl::StatusOr<CudaKernelSource> k = GenerateCuda(f);
    ASSERT_FALSE(k.ok()) << needle;
    EXPECT_NE(std::string(k.status().message()).find(needle), std::string::npos) << k.status();
  };
  Expr i = Var::Make("i");
  Stmt store = Store::Make("Y", FloatImm::Make(1), i);
  fails(For::Make("i", 0, 64, ForKind::kParallel, store), "parallel loops");
  fails(For::Make("i", 0, Var::Make("n"), ForKind::kGpuThread, store), "constant extent");
  fails(Allocate::Make("t", Type::Float(), 8, MemoryScope::kHeap, store), "heap buffer");
  fails(For::Make("i", 0, 8, ForKind::kGpuThread, Store::Make("Y", Load::Make("Y", i * 8, Type::Float(32, 8)), i * 8)),
        "vector types");
  fails(For::Make("i", 0, 16, ForKind::kGpuThread,
                  Store::Make("Y", Broadcast::Make(FloatImm::Make(1), 4), i * 4)),
        "vector arithmetic");
  fails(For::Make("i", 0, 64, ForKind::kGpuThread, Store::Make("Y", Call::Make("no_such_intrinsic", {}), i)),
        "intrinsic 'no_such_intrinsic'");
  Stmt deep = store;
  for (const char* v : {"a", "b", "c", "d"}) deep = For::Make(v, 0, 2, ForKind::kGpuBlock, deep);
  fails(For::Make("i", 0, 64, ForKind::kGpuThread, deep), "more than three");
}

}  // namespace
}  // namespace tunefarm::kernels
