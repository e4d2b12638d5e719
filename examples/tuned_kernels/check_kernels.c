// Runs every tuned kernel on random inputs, through the dispatcher by shape,
// and compares each output element with a plain double-precision reference.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tunefarm_kernels.h"

static float* random_buffer(long n, unsigned* seed) {
  float* p = malloc(sizeof(float) * (size_t)n);
  for (long i = 0; i < n; ++i) p[i] = (float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f;
  return p;
}

// |got - want| within a float summation's error bound for `terms` products.
static int close_enough(float got, double want, double magnitude, long terms) {
  return fabs(got - want) <= 2.0 * (terms + 2) * 0x1p-24 * magnitude + 1e-30;
}

static int check_matmul(long M, long N, long K, int bias, int relu) {
  unsigned seed = 1;
  float *A = random_buffer(M * K, &seed), *B = random_buffer(K * N, &seed), *b = random_buffer(N, &seed);
  float* C = malloc(sizeof(float) * (size_t)(M * N));
  void* args[4] = {A, B, bias ? (void*)b : (void*)C, C};
  if (tunefarm_matmul(M, N, K, 0, bias, relu, 0, args) != 0) {
    fprintf(stderr, "no kernel for matmul %ldx%ldx%ld\n", M, N, K);
    return 1;
  }
  int bad = 0;
  for (long i = 0; i < M; ++i) {
    for (long j = 0; j < N; ++j) {
      double s = bias ? b[j] : 0, mag = bias ? fabs(b[j]) : 0;
      for (long k = 0; k < K; ++k) {
        s += (double)A[i * K + k] * B[k * N + j];
        mag += fabs((double)A[i * K + k] * B[k * N + j]);
      }
      if (relu && s < 0) s = 0;
      if (!close_enough(C[i * N + j], s, mag, K + 1)) ++bad;
    }
  }
  printf("matmul(M=%ld,N=%ld,K=%ld,bias=%d,relu=%d): %s\n", M, N, K, bias, relu, bad ? "WRONG" : "ok");
  free(A), free(B), free(b), free(C);
  return bad != 0;
}

static int check_conv_nhwc(long C, long H, long W, long K, long R, long S, long pad) {
  unsigned seed = 2;
  const long OH = H + 2 * pad - R + 1, OW = W + 2 * pad - S + 1;
  float *in = random_buffer(H * W * C, &seed), *w = random_buffer(R * S * C * K, &seed);
  float* out = malloc(sizeof(float) * (size_t)(OH * OW * K));
  void* args[3] = {in, w, out};
  // N, C, H, W, K, R, S, stride, pad, dilation, bias, relu, tf32, wblock, winograd
  if (tunefarm_conv2d(1, C, H, W, K, R, S, 1, pad, 1, 0, 0, 0, 0, 0, "NHWC", args) != 0) {
    fprintf(stderr, "no conv2d kernel for this shape\n");
    return 1;
  }
  int bad = 0;
  for (long oh = 0; oh < OH; ++oh) {
    for (long ow = 0; ow < OW; ++ow) {
      for (long k = 0; k < K; ++k) {
        double s = 0, mag = 0;
        for (long r = 0; r < R; ++r) {
          for (long q = 0; q < S; ++q) {
            const long h = oh + r - pad, x = ow + q - pad;
            if (h < 0 || h >= H || x < 0 || x >= W) continue;
            for (long c = 0; c < C; ++c) {
              const double p = (double)in[(h * W + x) * C + c] * w[((r * S + q) * C + c) * K + k];
              s += p;
              mag += fabs(p);
            }
          }
        }
        if (!close_enough(out[(oh * OW + ow) * K + k], s, mag, C * R * S)) ++bad;
      }
    }
  }
  printf("conv2d NHWC %ldx%ldx%ld -> %ld: %s\n", H, W, C, K, bad ? "WRONG" : "ok");
  free(in), free(w), free(out);
  return bad != 0;
}

int main(void) {
  printf("%d kernels:\n", tunefarm_kernel_count);
  for (int i = 0; i < tunefarm_kernel_count; ++i) printf("  %s\n", tunefarm_kernel_workloads[i]);
  int failures = 0;
  failures += check_matmul(64, 48, 96, 0, 0);
  failures += check_matmul(77, 129, 61, 1, 1);
  failures += check_conv_nhwc(8, 12, 12, 16, 3, 3, 1);
  return failures == 0 ? 0 : 1;
}
