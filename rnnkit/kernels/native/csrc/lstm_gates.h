// The LSTM's recurrent product and gate activations of one step in one register-tiled pass (float32,
// AVX-512, H a multiple of 16): the small route's step of csrc/lstm_loop.cpp.
//
// W_hh (4H, H) is repacked once per call by blocks of 16 hidden units: for block u and input k, the
// 64 weights of gates i, f, C~, o of those units side by side (pack_gate_blocks). A tile of R rows
// then keeps the four gates' pre-activations of 16 units in 4R vector registers while k runs over
// h_{t-1} (per k: 4 weight loads and R broadcasts for 4R FMAs, against 2 and 4 for 8 in small_gemm.h),
// and adds xp_t, activates and stores i, f, C~, o straight from the registers: the product never goes
// through memory and no separate activation pass runs. Blocks run outermost, so a block's weights
// (64 H floats: 16 KB at H = 64) stay in L1 across the rows.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "step_product.h"
#include "vec_math.h"

namespace rnnkit {

#if defined(CPU_CAPABILITY_AVX512)
constexpr bool kHaveFusedGates = true;
#else
constexpr bool kHaveFusedGates = false;
#endif
constexpr int64_t kGateBlock = 16;  // hidden units per block: one AVX-512 vector of float32

// Whether the fused step can run: float32, AVX-512, whole blocks of units.
inline bool fused_gates_apply(const at::Tensor& weight_hh) {
  return kHaveFusedGates && weight_hh.scalar_type() == at::kFloat && weight_hh.size(1) % kGateBlock == 0 &&
         weight_hh.size(0) == 4 * weight_hh.size(1);
}

// W_hh (4H, H) -> (H / 16, H, 4, 16): block u, input k, gate q, unit l = W_hh[q H + 16 u + l, k].
inline at::Tensor pack_gate_blocks(const at::Tensor& weight_hh) {
  const int64_t hidden = weight_hh.size(1);
  return weight_hh.contiguous().view({4, hidden / kGateBlock, kGateBlock, hidden}).permute({1, 3, 0, 2}).contiguous();
}

#if defined(CPU_CAPABILITY_AVX512)
// R rows of one block: g[r, q H + 16 u + l] = act_q(x[r, j] + bias[j] + sum_k a[r, k] W_hh[j, k]),
// j = q H + 16 u + l (the accumulators start from the bias).
template <int R>
inline void gate_tile(const float* a, const float* block, const float* x, const float* bias, float* g,
                      int64_t hidden, int64_t u) {
  using V = at::vec::Vectorized<float>;
  const int64_t col = u * kGateBlock;
  __m512 acc[R][4];
  for (int q = 0; q < 4; ++q) {
    const __m512 b = _mm512_loadu_ps(bias + q * hidden + col);
    for (int r = 0; r < R; ++r) acc[r][q] = b;
  }
  for (int64_t k = 0; k < hidden; ++k) {
    const float* w = block + k * 4 * kGateBlock;
    const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16), w2 = _mm512_loadu_ps(w + 32),
                 w3 = _mm512_loadu_ps(w + 48);
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r * hidden + k]);
      acc[r][0] = _mm512_fmadd_ps(ar, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(ar, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(ar, w3, acc[r][3]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = x + r * 4 * hidden + col;
    float* gr = g + r * 4 * hidden + col;
    sigmoid(V(_mm512_add_ps(acc[r][0], _mm512_loadu_ps(xr)))).store(gr);  // i_t
    sigmoid(V(_mm512_add_ps(acc[r][1], _mm512_loadu_ps(xr + hidden)))).store(gr + hidden);  // f_t
    tanh(V(_mm512_add_ps(acc[r][2], _mm512_loadu_ps(xr + 2 * hidden)))).store(gr + 2 * hidden);  // C~_t
    sigmoid(V(_mm512_add_ps(acc[r][3], _mm512_loadu_ps(xr + 3 * hidden)))).store(gr + 3 * hidden);  // o_t
  }
}
#endif

// Rows [begin, end) of one step: g (B, 4H) = i, f, C~, o from x = xp_t (B, 4H), the bias (4H), a =
// h_{t-1} (B, H) (or h_{t-1} * drop) and the packed W_hh. Only where fused_gates_apply() held.
inline void lstm_gates_rows(const float* a, const float* packed, const float* x, const float* bias, float* g,
                            int64_t hidden, int64_t begin, int64_t end) {
#if defined(CPU_CAPABILITY_AVX512)
  constexpr int kRows = 4;  // 16 accumulators, 4 weights and a broadcast: 21 of the 32 vector registers
  for (int64_t u = 0; u < hidden / kGateBlock; ++u) {
    const float* block = packed + u * hidden * 4 * kGateBlock;
    int64_t b = begin;
    for (; b + kRows <= end; b += kRows) {
      gate_tile<kRows>(a + b * hidden, block, x + b * 4 * hidden, bias, g + b * 4 * hidden, hidden, u);
    }
    for (; b < end; ++b) {
      gate_tile<1>(a + b * hidden, block, x + b * 4 * hidden, bias, g + b * 4 * hidden, hidden, u);
    }
  }
#else
  TORCH_CHECK(false, "lstm_gates_rows: built without AVX-512");
#endif
}

// The fused step as step_product.h's small route for the LSTM's forward: timed against the other
// routes as what it is (the product and the activations), its prepared weight the packed W_hh.
inline const SmallKernel& lstm_gates_kernel() {
  static const SmallKernel kernel{
      "lstm_gates", [](const at::Tensor& weight) { return pack_gate_blocks(weight); },
      [](const at::Tensor& packed, const at::Tensor& a, at::Tensor& c, int64_t begin, int64_t end) {
        float* g = c.data_ptr<float>();  // read as xp_t and the bias, written as the gates: any values time alike
        lstm_gates_rows(a.data_ptr<float>(), packed.data_ptr<float>(), g, g, g, a.size(1), begin, end);
      }};
  return kernel;
}

}  // namespace rnnkit
