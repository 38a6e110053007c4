// Vectorized activations over contiguous arrays, shared by the compiled LSTM and GRU loops.
//
// Built on ATen's at::vec::Vectorized<T>, whose transcendental functions are SLEEF's (1-ulp, the
// ones torch's own CPU kernels use). The instruction set is chosen when the extension is built
// (compiled_loop.py passes CPU_CAPABILITY_AVX2 and the matching -m flags where torch reports AVX2 or
// better); without it Vectorized<T> falls back to its portable scalar implementation, same results.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace rnnkit {

using at::vec::Vectorized;

// sigma(x) = 1 / (1 + e^{-x}), the formula of torch's CPU sigmoid kernel.
template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& x) {
  return (Vectorized<T>(T(1)) + x.neg().exp()).reciprocal();
}

// dst[k] = sigma(src[k]) for k < n (dst may be src).
template <typename T>
inline void sigmoid_n(const T* src, T* dst, int64_t n) {
  using V = Vectorized<T>;
  int64_t k = 0;
  for (; k + V::size() <= n; k += V::size()) sigmoid(V::loadu(src + k)).store(dst + k);
  if (k < n) sigmoid(V::loadu(src + k, n - k)).store(dst + k, n - k);
}

// tanh(x) = 1 - 2 / (e^{2x} + 1): one SLEEF exp and a division, ~1 ns per element on AVX2 against
// ~2.7 ns for Sleef_tanhf8_u10 (what torch.tanh runs) on this project's machine; saturates to +-1
// exactly (e^{2x} = inf or 0). Its error is absolute, within a few ulp of 1 (1e-7 in float32, 4e-16
// in float64): near 0 the relative error grows, which the recurrences never see next to O(1) terms.
template <typename T>
inline Vectorized<T> tanh(const Vectorized<T>& x) {
  using V = Vectorized<T>;
  const V one(T(1)), two(T(2));
  return one - two / ((x + x).exp() + one);
}

// dst[k] = tanh(src[k]) for k < n (dst may be src).
template <typename T>
inline void tanh_n(const T* src, T* dst, int64_t n) {
  using V = Vectorized<T>;
  int64_t k = 0;
  for (; k + V::size() <= n; k += V::size()) tanh(V::loadu(src + k)).store(dst + k);
  if (k < n) tanh(V::loadu(src + k, n - k)).store(dst + k, n - k);
}

}  // namespace rnnkit
