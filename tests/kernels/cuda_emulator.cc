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
// Shared memory: the dynamic pool (blocks run one after another), and the
// 128-byte swizzle of an address inside it (its 16-byte unit, bits 4-6,
// XOR its 128-byte row mod 8, bits 7-9), as the GPU applies it.
alignas(1024) static unsigned char tf_dynamic_shared[232448];
static inline unsigned char* tf_swizzle128(const void* p) {
  const unsigned long a = (unsigned long)p;
  return (unsigned char*)(a ^ (((a >> 7) & 7ul) << 4));
}
// Set when the emulation finds the kernel wrong in a way its output may
// not show (a wgmma whose operands changed before it was waited for) or
// outgrows its bookkeeping; read by the emulator after the launches.
static int tf_emulation_error;
extern "C" int tf_emulation_failed() { return tf_emulation_error; }
// Each thread's asynchronous operations of one kind, in groups: those
// since the last commit form the open group, and retire(n) completes the
// oldest groups until at most n committed ones remain. Outgrowing the
// bookkeeping fails the launch rather than dropping work.
template <class Op, unsigned Groups, unsigned PerGroup>
struct tf_queue {
  Op ops[1024][Groups][PerGroup];
  unsigned count[1024][Groups], first[1024], open[1024];
  void reset(unsigned me) { first[me] = open[me] = count[me][0] = 0; }
  Op* add(unsigned me) {
    const unsigned g = open[me] % Groups;
    if (open[me] - first[me] >= Groups || count[me][g] == PerGroup) {
      __atomic_store_n(&tf_emulation_error, 1, __ATOMIC_RELAXED);
      return nullptr;
    }
    return &ops[me][g][count[me][g]++];
  }
  void commit(unsigned me) { count[me][++open[me] % Groups] = 0; }
  template <class F>
  void retire(unsigned me, long long n, F complete) {
    for (; open[me] - first[me] > n; ++first[me]) {
      const unsigned g = first[me] % Groups;
      for (unsigned i = 0; i < count[me][g]; ++i) complete(ops[me][g][i]);
    }
  }
};
// cp.async, asynchronous as the GPU may make it: a copy reads its source
// when issued and writes its destination only when a wait retires its
// group, the latest it may land; so a kernel that reads shared memory
// before waiting reads stale values.
struct tf_copy { unsigned char* dst; unsigned char bytes[16]; unsigned n; };
static tf_queue<tf_copy, 8, 128> tf_copies;
static inline void tf_cp_async(const float& dst, const float& src, int valid, unsigned n) {
  tf_copy* c = tf_copies.add(tf_linear);
  if (c == nullptr) return;
  c->dst = tf_swizzle128(&dst);
  c->n = n;
  for (unsigned i = 0; i < n; ++i) c->bytes[i] = valid ? ((const unsigned char*)&src)[i] : 0;
}
static inline void tf_cp_async16(const float& dst, const float& src, int valid) { tf_cp_async(dst, src, valid, 16); }
static inline void tf_cp_async4(const float& dst, const float& src, int valid) { tf_cp_async(dst, src, valid, 4); }
static inline void tf_cp_async_commit() { tf_copies.commit(tf_linear); }
static inline void tf_cp_async_wait(long long n) {
  tf_copies.retire(tf_linear, n, [](const tf_copy& c) {
    for (unsigned b = 0; b < c.n; ++b) c.dst[b] = c.bytes[b];
  });
}
// Warpgroup tensor cores: wgmma m64n<N>k8, both operands in shared memory
// K-major in 128B-swizzled rows of 32 values (rows 128 bytes apart, from
// the logical address of the first), read as TF32 (low 13 bits dropped).
// Each thread computes its own accumulators (row 16 * warp + g (+8),
// column 8i + 2t (+1)) when a wait retires the instruction's group, the
// latest it may read its operands, and compares that with what they gave
// when it was issued: a difference means the kernel changed them too soon.
static inline void tf_wgmma_fence() {}
static inline void tf_fence_proxy_async() {}
static inline float tf_tf32_at(const float& base, unsigned row, unsigned k) {
  float x;
  __builtin_memcpy(&x, tf_swizzle128((const unsigned char*)&base + row * 128 + k * 4), 4);
  unsigned u;
  __builtin_memcpy(&u, &x, 4);
  u &= 0xffffe000u;
  __builtin_memcpy(&x, &u, 4);
  return x;
}
static inline void tf_wgmma_products(unsigned n, const float& a, const float& b, float* out) {
  const unsigned wt = tf_linear % 128, w = wt / 32, g = wt % 32 / 4, t = wt % 4;
  for (unsigned r = 0; r < n / 2; ++r) {
    const unsigned row = 16 * w + g + (r % 4 >= 2 ? 8 : 0), col = 8 * (r / 4) + 2 * t + r % 2;
    float sum = 0;
    for (unsigned k = 0; k < 8; ++k) sum += tf_tf32_at(a, row, k) * tf_tf32_at(b, col, k);
    out[r] = sum;
  }
}
struct tf_mma { unsigned n; const float* a; const float* b; float* d[128]; float early[128]; };
static tf_queue<tf_mma, 4, 8> tf_mmas;
static inline void tf_wgmma_emulate(unsigned n, const float& a, const float& b, float* const* d) {
  tf_mma* m = tf_mmas.add(tf_linear);
  if (m == nullptr) return;
  m->n = n;
  m->a = &a;
  m->b = &b;
  for (unsigned r = 0; r < n / 2; ++r) m->d[r] = d[r];
  tf_wgmma_products(n, a, b, m->early);
}
static inline void tf_wgmma_commit() { tf_mmas.commit(tf_linear); }
static inline void tf_wgmma_wait(long long n) {
  tf_mmas.retire(tf_linear, n, [](const tf_mma& m) {
    float late[128];
    tf_wgmma_products(m.n, *m.a, *m.b, late);
    for (unsigned r = 0; r < m.n / 2; ++r) {
      if (__builtin_memcmp(&late[r], &m.early[r], 4) != 0) __atomic_store_n(&tf_emulation_error, 1, __ATOMIC_RELAXED);
      *m.d[r] += late[r];
    }
  });
}
#define TF_WGMMA(N)                                                                 \
  template <class... D>                                                             \
  static inline void tf_wgmma_tf32_n##N(const float& a, const float& b, D&... d) { \
    float* const regs[] = {&d...};                                                  \
    tf_wgmma_emulate(N, a, b, regs);                                                \
  }
TF_WGMMA(8) TF_WGMMA(16) TF_WGMMA(24) TF_WGMMA(32) TF_WGMMA(40) TF_WGMMA(48) TF_WGMMA(56) TF_WGMMA(64)
TF_WGMMA(72) TF_WGMMA(80) TF_WGMMA(88) TF_WGMMA(96) TF_WGMMA(104) TF_WGMMA(112) TF_WGMMA(120) TF_WGMMA(128)
TF_WGMMA(136) TF_WGMMA(144) TF_WGMMA(152) TF_WGMMA(160) TF_WGMMA(168) TF_WGMMA(176) TF_WGMMA(184) TF_WGMMA(192)
TF_WGMMA(200) TF_WGMMA(208) TF_WGMMA(216) TF_WGMMA(224) TF_WGMMA(232) TF_WGMMA(240) TF_WGMMA(248) TF_WGMMA(256)
extern "C" void tf_set_index(unsigned bx, unsigned by, unsigned bz, unsigned tx, unsigned ty, unsigned tz,
                             unsigned linear) {
  blockIdx = {bx, by, bz};
  threadIdx = {tx, ty, tz};
  tf_linear = linear;
  tf_copies.reset(linear);
  tf_mmas.reset(linear);
}
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
  auto failed = reinterpret_cast<int (*)()>(dlsym(lib, "tf_emulation_failed"));
  void* entry = dlsym(lib, k.entry.c_str());
  if (set_sync == nullptr || set_index == nullptr || failed == nullptr || entry == nullptr) {
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
  if (failed()) {
    return absl::InternalError(
        "the kernel changed a wgmma's operands before waiting for it, or kept more asynchronous copies or wgmma "
        "groups in flight than the emulation holds");
  }
  return absl::OkStatus();
}

}  // namespace tunefarm::kernels
