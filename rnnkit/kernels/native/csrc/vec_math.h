// Vectorized activations over contiguous arrays, shared by the compiled LSTM and GRU loops.
//
// Built on ATen's at::vec::Vectorized<T>, whose transcendental functions are SLEEF's (1-ulp, the
// ones torch's own CPU kernels use), except exp in float32 on AVX2 and AVX-512: our own, below. The
// instruction set is chosen when the extension is built (cpp_loop.py passes CPU_CAPABILITY_AVX512 or
// CPU_CAPABILITY_AVX2 and the matching -m flags, as torch reports for this machine); without either
// Vectorized<T> falls back to its portable scalar implementation (slower, same formulas).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>
#include <type_traits>

namespace rnnkit {

using at::vec::Vectorized;

// e^x. In float32 with AVX2 or AVX-512 our own: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite, ln2 split in two),
// e^r by its degree-7 Taylor polynomial (truncation 5e-9 relative, below float's half ulp), times 2^n
// built in the exponent bits; x is clamped to [-87.3, 88.3] so 2^n stays a normal float: e^x saturates
// at ~2e38 and ~1e-38 instead of inf and 0, which sigmoid and tanh below turn into their exact limits
// up to 1e-38. About 2.5x faster than SLEEF's exp (0.28 against 0.71 ns per element here); within
// 2 ulp of it. Elsewhere (float64, neither instruction set) ATen's exp (SLEEF where vectorized).
template <typename T>
inline Vectorized<T> exp(const Vectorized<T>& x) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {  // the same steps, 16 lanes
    const __m512 clamped = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), clamped);  // ln2, high bits
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);  // ln2, the rest
    __m512 poly = _mm512_set1_ps(1.f / 5040.f);
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.f / 720.f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.f / 120.f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.f / 24.f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.f / 6.f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(0.5f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.f));
    const __m512i two_n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return Vectorized<T>(_mm512_mul_ps(poly, _mm512_castsi512_ps(two_n)));
  }
#endif
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256 clamped = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(clamped, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), clamped);  // ln2, high bits
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);  // ln2, the rest
    __m256 poly = _mm256_set1_ps(1.f / 5040.f);
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 720.f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 120.f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 24.f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f / 6.f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(0.5f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.f));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return Vectorized<T>(_mm256_mul_ps(poly, _mm256_castsi256_ps(two_n)));
  }
#endif
  return x.exp();
}

// 1 / d. In float32 with AVX-512: the 14-bit estimate (rcp14) and one Newton step r (2 - d r), within
// 2^-27 relative (below float's half ulp) and ~3x faster than a division, which the activations below
// take five of per LSTM cell; an estimate of 0 (d past ~8e37, where 1 / d is below float's smallest
// normal number) stays 0, the activations' exact limit to 1e-38. Elsewhere a division.
template <typename T>
inline Vectorized<T> reciprocal(const Vectorized<T>& d) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 r = _mm512_rcp14_ps(d);
    return Vectorized<T>(_mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f))));
  }
#endif
  return d.reciprocal();
}

// sigma(x) = 1 / (1 + e^{-x}), the formula of torch's CPU sigmoid kernel.
template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& x) {
  return reciprocal(Vectorized<T>(T(1)) + exp(x.neg()));
}

// tanh(x) = 1 - 2 / (e^{2x} + 1): one exp (above) and a division, ~0.5 ns per element in float32 on
// AVX2 against ~2.7 ns for Sleef_tanhf8_u10 (what torch.tanh runs) on this project's machine;
// saturates to +-1 (e^{2x} = inf or 0, or their clamped stand-ins). Its error is absolute, within a
// few ulp of 1 (2e-7 in float32, 4e-16 in float64, measured against float64 torch.tanh): near 0 the
// relative error grows, which the recurrences never see next to O(1) terms.
template <typename T>
inline Vectorized<T> tanh(const Vectorized<T>& x) {
  using V = Vectorized<T>;
  const V one(T(1)), two(T(2));
  return one - two * reciprocal(exp(x + x) + one);
}

// dst[k] = f(src[k]) for k < n, a vector at a time (dst may be src).
template <typename T, typename F>
inline void map_n(F f, const T* src, T* dst, int64_t n) {
  using V = Vectorized<T>;
  int64_t k = 0;
  for (; k + V::size() <= n; k += V::size()) f(V::loadu(src + k)).store(dst + k);
  if (k < n) f(V::loadu(src + k, n - k)).store(dst + k, n - k);
}

template <typename T>
inline void sigmoid_n(const T* src, T* dst, int64_t n) {
  map_n<T>([](const Vectorized<T>& x) { return sigmoid(x); }, src, dst, n);
}

template <typename T>
inline void tanh_n(const T* src, T* dst, int64_t n) {
  map_n<T>([](const Vectorized<T>& x) { return tanh(x); }, src, dst, n);
}

}  // namespace rnnkit
