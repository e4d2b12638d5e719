#include "cuda_emulator.h"

#include <dlfcn.h>

#include <atomic>
#include <barrier>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"

namespace tunefarm::kernels {
namespace {

// Included before the generated source; it must not declare int64_t (the
// source does).
constexpr const char* kShim = R"(
struct tf_dim3 { unsigned x, y, z; };
static thread_local tf_dim3 threadIdx, blockIdx;
static thread_local unsigned tf_linear;  // the thread's index in its block
static void (*tf_sync)();
extern "C" void tf_set_sync(void (*f)()) { tf_sync = f; }
extern "C" void tf_set_index(unsigned bx, unsigned by, unsigned bz, unsigned tx, unsigned ty, unsigned tz,
                             unsigned linear) {
  blockIdx = {bx, by, bz};
  threadIdx = {tx, ty, tz};
  tf_linear = linear;
}
// The tensor-core intrinsics: TF32 rounding (to nearest, ties away), and
// mma.m16n8k8 as the warp-wide operation it is: every lane posts its
// fragments, waits for the block, computes its own part of D, and waits
// again before the next call may overwrite what others still read.
static inline float tf_round_tf32(float x) {
  unsigned u;
  __builtin_memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  __builtin_memcpy(&x, &u, 4);
  return x;
}
static float tf_frag_a[1024][4], tf_frag_b[1024][2], tf_frag_c[1024][4];
static inline void tf_mma_tf32_m16n8k8(float& d0, float& d1, float& d2, float& d3, float a0, float a1, float a2,
                                       float a3, float b0, float b1) {
  const unsigned me = tf_linear, base = me / 32 * 32, lane = me % 32, g = lane / 4, t = lane % 4;
  float* a = tf_frag_a[me]; float* b = tf_frag_b[me]; float* c = tf_frag_c[me];
  a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3; b[0] = b0; b[1] = b1;
  c[0] = d0; c[1] = d1; c[2] = d2; c[3] = d3;
  tf_sync();
  float d[4];
  for (unsigned q = 0; q < 4; ++q) {
    const unsigned row = g + (q >= 2 ? 8 : 0), col = 2 * t + q % 2;
    float acc = c[q];
    for (unsigned k = 0; k < 8; ++k) {
      const float av = tf_frag_a[base + 4 * (row % 8) + k % 4][(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)];
      const float bv = tf_frag_b[base + 4 * col + k % 4][k / 4];
      acc += av * bv;
    }
    d[q] = acc;
  }
  tf_sync();
  d0 = d[0]; d1 = d[1]; d2 = d[2]; d3 = d[3];
}
// Split-K's device-wide intrinsics; blocks run one after another here.
static inline void tf_fence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T>
static inline T tf_arrive(T& c) { return __atomic_fetch_add(&c, 1, __ATOMIC_SEQ_CST); }
static inline float tf_load_cg(const float& x) { return x; }
// Warpgroup tensor cores: wgmma m64n<N>k8 with both operands in shared
// memory as core matrices (8 rows of 4 values, 16 bytes apart; 128 bytes
// between core matrices along k, sbo bytes along m or n). Each thread
// computes its own accumulators (row 16 * warp + g (+8), column 8i + 2t
// (+1)); the instruction's asynchrony is not modelled, so the fences and
// waits do nothing.
static inline void tf_fence_proxy_async() {}
static inline void tf_wgmma_fence() {}
static inline void tf_wgmma_commit() {}
static inline void tf_wgmma_wait() {}
static inline float tf_core_matrix_at(const float& base, long long sbo, unsigned outer, unsigned k) {
  return (&base)[outer / 8 * (sbo / 4) + k / 4 * 32 + outer % 8 * 4 + k % 4];
}
static inline void tf_wgmma_emulate(unsigned n, const float& a, const float& b, long long sbo_a, long long sbo_b,
                                    float* const* d) {
  const unsigned wt = tf_linear % 128, w = wt / 32, g = wt % 32 / 4, t = wt % 4;
  for (unsigned r = 0; r < n / 2; ++r) {
    const unsigned row = 16 * w + g + (r % 4 >= 2 ? 8 : 0), col = 8 * (r / 4) + 2 * t + r % 2;
    float acc = *d[r];
    for (unsigned k = 0; k < 8; ++k) acc += tf_core_matrix_at(a, sbo_a, row, k) * tf_core_matrix_at(b, sbo_b, col, k);
    *d[r] = acc;
  }
}
#define TF_WGMMA(N)                                                                                     \
  template <class... D>                                                                                 \
  static inline void tf_wgmma_tf32_n##N(const float& a, const float& b, long long sa, long long sb, D&... d) { \
    float* const regs[] = {&d...};                                                                      \
    tf_wgmma_emulate(N, a, b, sa, sb, regs);                                                            \
  }
TF_WGMMA(8) TF_WGMMA(16) TF_WGMMA(24) TF_WGMMA(32) TF_WGMMA(40) TF_WGMMA(48) TF_WGMMA(56) TF_WGMMA(64)
TF_WGMMA(72) TF_WGMMA(80) TF_WGMMA(88) TF_WGMMA(96) TF_WGMMA(104) TF_WGMMA(112) TF_WGMMA(120) TF_WGMMA(128)
TF_WGMMA(136) TF_WGMMA(144) TF_WGMMA(152) TF_WGMMA(160) TF_WGMMA(168) TF_WGMMA(176) TF_WGMMA(184) TF_WGMMA(192)
TF_WGMMA(200) TF_WGMMA(208) TF_WGMMA(216) TF_WGMMA(224) TF_WGMMA(232) TF_WGMMA(240) TF_WGMMA(248) TF_WGMMA(256)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define __syncthreads() tf_sync()
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
)";

std::barrier<>* g_block = nullptr;
void Sync() { g_block->arrive_and_wait(); }

}  // namespace

absl::Status EmulateCuda(const CudaKernelSource& k, const std::vector<float*>& buffers, const std::string& work_dir,
                         int launches, const std::function<void()>& between) {
  static std::atomic<int> next{0};
  const std::string stem = absl::StrCat(work_dir, "/emulated-", next++);
  std::ofstream(stem + ".h") << kShim;
  std::ofstream(stem + ".cc") << k.source;
  const std::string cmd = absl::StrCat("c++ -std=c++17 -O1 -w -shared -fPIC -include ", stem, ".h ", stem, ".cc -o ",
                                       stem, ".so 2> ", stem, ".log");
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(stem + ".log");
    return absl::InvalidArgumentError(absl::StrCat("the host compiler rejected the CUDA source: ",
                                                   std::string(std::istreambuf_iterator<char>(log), {})));
  }
  void* lib = dlopen((stem + ".so").c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return absl::InternalError(dlerror());
  std::unique_ptr<void, int (*)(void*)> closer(lib, dlclose);
  auto set_sync = reinterpret_cast<void (*)(void (*)())>(dlsym(lib, "tf_set_sync"));
  auto set_index = reinterpret_cast<void (*)(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned)>(
      dlsym(lib, "tf_set_index"));
  void* entry = dlsym(lib, k.entry.c_str());
  if (set_sync == nullptr || set_index == nullptr || entry == nullptr) {
    return absl::InternalError(absl::StrCat("entry '", k.entry, "' not found"));
  }
  set_sync(&Sync);
  // Every argument is a pointer, passed alike whatever its type.
  using P = void*;
  auto call = [&] {
    const std::vector<float*>& b = buffers;
    switch (b.size()) {
      case 2: return reinterpret_cast<void (*)(P, P)>(entry)(b[0], b[1]);
      case 3: return reinterpret_cast<void (*)(P, P, P)>(entry)(b[0], b[1], b[2]);
      case 4: return reinterpret_cast<void (*)(P, P, P, P)>(entry)(b[0], b[1], b[2], b[3]);
      case 5: return reinterpret_cast<void (*)(P, P, P, P, P)>(entry)(b[0], b[1], b[2], b[3], b[4]);
    }
  };
  if (buffers.size() < 2 || buffers.size() > 5) return absl::InvalidArgumentError("2 to 5 buffers");
  const int64_t threads = k.block[0] * k.block[1] * k.block[2];
  for (int launch = 0; launch < launches; ++launch) {
    if (launch > 0 && between) between();
    for (int64_t bz = 0; bz < k.grid[2]; ++bz) {
      for (int64_t by = 0; by < k.grid[1]; ++by) {
        for (int64_t bx = 0; bx < k.grid[0]; ++bx) {
          std::barrier<> block(threads);
          g_block = &block;
          std::vector<std::thread> pool;
          for (int64_t t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
              set_index(bx, by, bz, t % k.block[0], t / k.block[0] % k.block[1], t / (k.block[0] * k.block[1]), t);
              call();
              block.arrive_and_drop();  // a finished thread waits at no more barriers
            });
          }
          for (std::thread& th : pool) th.join();
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tunefarm::kernels
