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
static void (*tf_sync)();
extern "C" void tf_set_sync(void (*f)()) { tf_sync = f; }
extern "C" void tf_set_index(unsigned bx, unsigned by, unsigned bz, unsigned tx, unsigned ty, unsigned tz) {
  blockIdx = {bx, by, bz};
  threadIdx = {tx, ty, tz};
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

absl::Status EmulateCuda(const CudaKernelSource& k, const std::vector<float*>& buffers, const std::string& work_dir) {
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
  auto set_index =
      reinterpret_cast<void (*)(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned)>(dlsym(lib, "tf_set_index"));
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
  for (int64_t bz = 0; bz < k.grid[2]; ++bz) {
    for (int64_t by = 0; by < k.grid[1]; ++by) {
      for (int64_t bx = 0; bx < k.grid[0]; ++bx) {
        std::barrier<> block(threads);
        g_block = &block;
        std::vector<std::thread> pool;
        for (int64_t t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            set_index(bx, by, bz, t % k.block[0], t / k.block[0] % k.block[1], t / (k.block[0] * k.block[1]));
            call();
            block.arrive_and_drop();  // a finished thread waits at no more barriers
          });
        }
        for (std::thread& th : pool) th.join();
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tunefarm::kernels
