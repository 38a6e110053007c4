// A register-blocked matrix product for the small per-step products of the compiled loops.
//
// At the sizes rnnkit's own trainings use (B = 8-32, H = 64-128) the recurrent product h_{t-1} W_hh^T
// is a few hundred thousand multiply-adds, and a BLAS call through ATen costs more in dispatch and
// packing than in arithmetic: at::mm_out takes 5.2 us at B=8, H=64 (4H = 256 columns) on this
// project's 2-core machine, ~25 GFLOP/s. This kernel keeps a 4 x 2-vector tile of C in registers,
// streams B's rows once per column block, and needs no packing; larger products take oneDNN or ATen
// (step_product.h times the routes and takes the fastest).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace rnnkit {

// c (m, n) = a (m, k) @ b (k, n), all row-major and contiguous, c not aliasing a or b.
template <typename T>
void small_gemm(const T* a, const T* b, T* c, int64_t m, int64_t n, int64_t k) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t kW = V::size();
  int64_t j = 0;
  for (; j + 2 * kW <= n; j += 2 * kW) {  // column blocks of two vectors
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {  // 4 x 2 vector tile in registers
      V c00(T(0)), c01(T(0)), c10(T(0)), c11(T(0)), c20(T(0)), c21(T(0)), c30(T(0)), c31(T(0));
      const T* a0 = a + i * k;
      for (int64_t p = 0; p < k; ++p) {
        const V b0 = V::loadu(b + p * n + j), b1 = V::loadu(b + p * n + j + kW);
        const V x0(a0[p]), x1(a0[k + p]), x2(a0[2 * k + p]), x3(a0[3 * k + p]);
        c00 = at::vec::fmadd(x0, b0, c00);
        c01 = at::vec::fmadd(x0, b1, c01);
        c10 = at::vec::fmadd(x1, b0, c10);
        c11 = at::vec::fmadd(x1, b1, c11);
        c20 = at::vec::fmadd(x2, b0, c20);
        c21 = at::vec::fmadd(x2, b1, c21);
        c30 = at::vec::fmadd(x3, b0, c30);
        c31 = at::vec::fmadd(x3, b1, c31);
      }
      T* c0 = c + i * n + j;
      c00.store(c0);
      c01.store(c0 + kW);
      c10.store(c0 + n);
      c11.store(c0 + n + kW);
      c20.store(c0 + 2 * n);
      c21.store(c0 + 2 * n + kW);
      c30.store(c0 + 3 * n);
      c31.store(c0 + 3 * n + kW);
    }
    for (; i < m; ++i) {  // remaining rows, one at a time
      V c0(T(0)), c1(T(0));
      for (int64_t p = 0; p < k; ++p) {
        const V x(a[i * k + p]);
        c0 = at::vec::fmadd(x, V::loadu(b + p * n + j), c0);
        c1 = at::vec::fmadd(x, V::loadu(b + p * n + j + kW), c1);
      }
      c0.store(c + i * n + j);
      c1.store(c + i * n + j + kW);
    }
  }
  for (; j + kW <= n; j += kW) {  // one remaining vector of columns
    for (int64_t i = 0; i < m; ++i) {
      V c0(T(0));
      for (int64_t p = 0; p < k; ++p) c0 = at::vec::fmadd(V(a[i * k + p]), V::loadu(b + p * n + j), c0);
      c0.store(c + i * n + j);
    }
  }
  for (; j < n; ++j) {  // remaining columns (fewer than a vector)
    for (int64_t i = 0; i < m; ++i) {
      T sum(0);
      for (int64_t p = 0; p < k; ++p) sum += a[i * k + p] * b[p * n + j];
      c[i * n + j] = sum;
    }
  }
}

// m * n * k beyond which small_gemm is not even timed as a route (step_product.h): past it a BLAS wins
// everywhere measured (10% slower than MKL already at (16, 512, 128) = 2^20 on the AMD machine).
constexpr int64_t kSmallGemmMaxWork = int64_t(1) << 21;

}  // namespace rnnkit
