// The GRU time loop of the native backend in C++ (issue 13): per step one recurrent product
// (step_product.h) and one pass over the rows (vec_math.h). Same inputs, outputs and semantics as rnnkit/kernels/native/gru.py (the Python fallback):
//   xp (T, B, 3H) = x W_ih^T + b_ih, gate order r, z, n as torch.nn.GRU; b_hh stays inside (gated by r);
//   acts (T, B, 4H) saved: r_t, z_t, n_t and the recurrent candidate part W_hn h_{t-1} + b_hn;
//   past a sequence's length its state is frozen and its output is zero;
//   drop (B, H) multiplies h_{t-1} in the recurrent product (not in the carry), or is empty;
//   zone holds zoneout's keep weights for h (zoneout.h), or is empty.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "sequence_lengths.h"
#include "step_product.h"
#include "vec_math.h"
#include "zoneout.h"

namespace {

constexpr int64_t kGrain = 8192;  // pointwise elements per thread before splitting the work

// Rows [begin, end) of one forward step, from x = xp_t (B, 3H) and p = h_{t-1} W_hh^T (B, 3H):
//   r, z = sigma(x_{r,z} + p_{r,z} + b_h{r,z}),  hn = p_n + b_hn,  n = tanh(x_n + r hn),
//   h_t = (1 - z) n + z h_{t-1};
// writes r, z, n, hn into a (B, 4H), h_t and the output; past a row's length h_t = h_{t-1}, output 0.
// With zoneout (keep) h_t then becomes k h_{t-1} + (1 - k) h_t.
template <typename T>
void gru_rows(const T* x, const T* p, const T* bias, T* a, const T* h_prev, T* h_out, T* out, const int64_t* lengths,
              const rnnkit::ZoneoutKeep<T>& keep, int64_t t, int64_t hidden, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    const int64_t k0 = b * hidden;
    if (t >= lengths[b]) {
      std::memcpy(h_out + k0, h_prev + k0, hidden * sizeof(T));
      std::fill(out + k0, out + k0 + hidden, T(0));
      continue;
    }
    const T* xr = x + b * 3 * hidden;
    const T* pr = p + b * 3 * hidden;
    T* ar = a + b * 4 * hidden;  // r, z, n, hn
    for (int64_t j = 0; j < 2 * hidden; ++j) ar[j] = xr[j] + pr[j] + bias[j];
    rnnkit::sigmoid_n(ar, ar, 2 * hidden);  // r_t, z_t
    T* n = ar + 2 * hidden;
    T* hn = ar + 3 * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      hn[j] = pr[2 * hidden + j] + bias[2 * hidden + j];  // W_hn h_{t-1} + b_hn
      n[j] = xr[2 * hidden + j] + ar[j] * hn[j];  // W_in x + b_in + r (W_hn h + b_hn)
    }
    rnnkit::tanh_n(n, n, hidden);  // n_t
    const T* z = ar + hidden;
    const T* hp = h_prev + k0;
    T* h = h_out + k0;
    T* y = out + k0;
    for (int64_t j = 0; j < hidden; ++j) h[j] = n[j] + z[j] * (hp[j] - n[j]);  // h_t = (1 - z) n + z h_{t-1}
    if (keep.on()) keep.mix(h, hp, t, 0, b, hidden);
    std::memcpy(y, h, hidden * sizeof(T));
  }
}

// Forward. With `save`: (output, h_n, hs, acts); without: (output, h_n). Per step one product
// (small_gemm.h) and one pass over the rows with raw pointers.
std::vector<at::Tensor> gru_forward(const at::Tensor& xp_in, const at::Tensor& h0, const at::Tensor& weight_hh,
                                    const at::Tensor& bias_hh, const at::Tensor& lengths_in, const at::Tensor& drop,
                                    const at::Tensor& zone, bool save) {
  TORCH_CHECK(xp_in.dim() == 3 && xp_in.size(2) % 3 == 0, "gru_forward: xp must be (T, B, 3H)");
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // the inner calls are not recorded anyway
  const at::Tensor xp = xp_in.contiguous();
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = xp.size(2) / 3;
  const int64_t state = batch * hidden;
  const at::Tensor lengths = rnnkit::sequence_lengths(lengths_in, steps, batch);
  const bool dropping = drop.numel() > 0;
  const at::Tensor drop_c = dropping ? drop.contiguous() : drop;
  // h W_hh^T, (B, H) -> (B, 3H); without gradients the prepared W_hh is kept for the next call
  const rnnkit::StepProduct product(weight_hh, batch, steps, false, nullptr, !save);
  const at::Tensor bias = bias_hh.contiguous();
  const at::Tensor zone_c = zone.contiguous();
  const auto opts = xp.options();
  at::Tensor output = at::empty({steps, batch, hidden}, opts);
  at::Tensor hs = at::empty({save ? steps : 2, batch, hidden}, opts);
  at::Tensor acts = at::empty({save ? steps : 1, batch, 4 * hidden}, opts);
  at::Tensor prod = at::empty({batch, 3 * hidden}, opts);  // the product's output, every step
  // the product's input: h_{t-1} itself (a view of h0 or hs), or h_{t-1} * drop in this buffer
  at::Tensor dropped = at::empty({dropping ? batch : 0, hidden}, opts);
  at::Tensor h_n = at::empty({batch, hidden}, opts);
  const at::Tensor h0c = h0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnkit_gru_forward", [&] {
    using T = scalar_t;
    const int64_t* len = lengths.data_ptr<int64_t>();
    const T* x = xp.data_ptr<T>();
    const T* dr = dropping ? drop_c.data_ptr<T>() : nullptr;
    const T* bias_p = bias.data_ptr<T>();
    T* dropped_p = dropped.data_ptr<T>();
    at::Tensor h_prev = h0c;  // h_{t-1} as a tensor
    const at::Tensor ping_pong[2] = {hs.select(0, 0), hs.select(0, 1 % hs.size(0))};  // views made once
    T* hs_p = hs.data_ptr<T>();
    T* acts_p = acts.data_ptr<T>();
    T* out_p = output.data_ptr<T>();
    const T* h = h0c.data_ptr<T>();
    const int64_t rows_grain = std::max<int64_t>(1, kGrain / (4 * hidden));
    const rnnkit::ZoneoutKeep<T> keep(zone_c, 1, batch, hidden);
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t slot = save ? t : t % 2;  // ping-pong h without saving
      if (dropping) {
        for (int64_t k = 0; k < state; ++k) dropped_p[k] = h[k] * dr[k];
      }
      // (B, 3H): (h_{t-1} [* drop]) W_h{r,z,n}^T
      const at::Tensor product_out = product.apply<T>(dropping ? dropped : h_prev, prod);
      const T* prod_p = product_out.data_ptr<T>();  // held above: oneDNN returns a new tensor
      T* h_t = hs_p + slot * state;
      T* a = acts_p + (save ? t : 0) * 4 * state;
      at::parallel_for(0, batch, rows_grain, [&](int64_t begin, int64_t end) {
        gru_rows<T>(x + t * 3 * state, prod_p, bias_p, a, h, h_t, out_p + t * state, len, keep, t, hidden, begin,
                    end);
      });
      h = h_t;
      h_prev = save ? hs.select(0, slot) : ping_pong[slot];
    }
    std::memcpy(h_n.data_ptr<T>(), h, state * sizeof(T));
  });
  if (!save) return {output, h_n};
  return {output, h_n, hs, acts};
}

// Rows [begin, end) of one backward step: from dL/dh_t (dh + d_output_t) to the gradients of the
// x-side pre-activations dx (B, 3H: r, z, n) and of the h-side ones dg (B, 3H: r, z, W_hn h + b_hn),
// and the direct part z dL/dh_t (plus k dL/dh_t with zoneout) that reaches h_{t-1}; the candidate's
// h-side part also into d_cand (B, H), kept for the weight gradient. Rows past their length get zeros.
template <typename T>
void gru_backward_rows(const T* a, const T* h_prev, const T* d_out, const T* dh, T* dz_direct, T* dx, T* dg,
                       T* d_cand, const int64_t* lengths, const rnnkit::ZoneoutKeep<T>& keep, int64_t t,
                       int64_t hidden, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    const int64_t k0 = b * hidden;
    T* dxr = dx + b * 3 * hidden;
    T* dgr = dg + b * 3 * hidden;
    if (t >= lengths[b]) {  // frozen: nothing flows into this step's gates
      std::fill(dxr, dxr + 3 * hidden, T(0));
      std::fill(dgr, dgr + 3 * hidden, T(0));
      std::fill(d_cand + k0, d_cand + k0 + hidden, T(0));
      continue;
    }
    const T* r = a + b * 4 * hidden;
    const T* z = r + hidden;
    const T* n = r + 2 * hidden;
    const T* hn = r + 3 * hidden;
    const T* hp = h_prev + k0;
    const T* dy = d_out + k0;
    const T* dhr = dh + k0;
    T* dzr = dz_direct + k0;
    const T* kh = keep.row(t, 0, b);  // zoneout's keep weights, or null
    for (int64_t j = 0; j < hidden; ++j) {
      T grad = dhr[j] + dy[j];  // dL/dh_t
      const T kept = keep.split(grad, kh, j);  // zoneout: the part that skips the update into h_{t-1}
      dzr[j] = grad * z[j] + kept;  // the direct path z * dh into h_{t-1}
      const T dn = (grad - grad * z[j]) * (T(1) - n[j] * n[j]);  // d n_pre
      const T d_r = dn * hn[j] * r[j] * (T(1) - r[j]);  // d r_pre
      const T d_z = (hp[j] - n[j]) * grad * z[j] * (T(1) - z[j]);  // d z_pre
      dxr[j] = d_r;
      dxr[hidden + j] = d_z;
      dxr[2 * hidden + j] = dn;
      dgr[j] = d_r;
      dgr[hidden + j] = d_z;
      dgr[2 * hidden + j] = dn * r[j];  // d(W_hn h + b_hn)
      d_cand[k0 + j] = dgr[2 * hidden + j];
    }
  }
}

// Backward: (d_xp, d_h0, d_weight_hh, d_bias_hh).
std::vector<at::Tensor> gru_backward(const at::Tensor& d_output_in, const at::Tensor& d_hn, const at::Tensor& h0,
                                     const at::Tensor& weight_hh, const at::Tensor& lengths_in, const at::Tensor& hs,
                                     const at::Tensor& acts, const at::Tensor& drop, const at::Tensor& zone) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t steps = acts.size(0), batch = acts.size(1), hidden = acts.size(2) / 4;
  const int64_t state = batch * hidden;
  const at::Tensor d_output = d_output_in.contiguous();
  const at::Tensor lengths = rnnkit::sequence_lengths(lengths_in, steps, batch);
  const bool dropping = drop.numel() > 0;
  const at::Tensor drop_c = dropping ? drop.contiguous() : drop;
  const rnnkit::StepProduct product(weight_hh.t(), batch, steps);  // dG W_hh, (B, 3H) -> (B, H)
  const at::Tensor acts_c = acts.contiguous(), hs_c = hs.contiguous();
  at::Tensor d_xp = at::empty({steps, batch, 3 * hidden}, acts.options());  // d(x-side) r, z, n
  // the h-side gradients are d_xp's for r and z; only the candidate's part, dn * r, is kept apart
  at::Tensor d_cand = at::empty({steps, batch, hidden}, acts.options());  // d(W_hn h + b_hn)
  at::Tensor dh = d_hn.contiguous().clone();
  at::Tensor dh_z = at::empty_like(dh);
  at::Tensor dg = at::empty({batch, 3 * hidden}, acts.options());  // the product's input, every step
  at::Tensor via_w = at::empty_like(dh);
  const at::Tensor h0c = h0.contiguous();
  const at::Tensor zone_c = zone.contiguous();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "rnnkit_gru_backward", [&] {
    using T = scalar_t;
    const int64_t* len = lengths.data_ptr<int64_t>();
    T* dh_p = dh.data_ptr<T>();
    T* dz_p = dh_z.data_ptr<T>();
    T* dg_p = dg.data_ptr<T>();
    T* d_xp_p = d_xp.data_ptr<T>();
    T* d_cand_p = d_cand.data_ptr<T>();
    const T* dr = dropping ? drop_c.data_ptr<T>() : nullptr;
    const T* acts_p = acts_c.data_ptr<T>();
    const T* hs_p = hs_c.data_ptr<T>();
    const T* dout_p = d_output.data_ptr<T>();
    const int64_t rows_grain = std::max<int64_t>(1, kGrain / (4 * hidden));
    const rnnkit::ZoneoutKeep<T> keep(zone_c, 1, batch, hidden);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T* hp = t > 0 ? hs_p + (t - 1) * state : h0c.data_ptr<T>();
      at::parallel_for(0, batch, rows_grain, [&](int64_t begin, int64_t end) {
        gru_backward_rows<T>(acts_p + t * 4 * state, hp, dout_p + t * state, dh_p, dz_p, d_xp_p + t * 3 * state,
                             dg_p, d_cand_p + t * state, len, keep, t, hidden, begin, end);
      });
      const at::Tensor via_w_out = product.apply<T>(dg, via_w);  // (B, H): into h_{t-1} (* drop) through W_hh
      const T* vw = via_w_out.data_ptr<T>();  // held above: oneDNN returns a new tensor
      for (int64_t b = 0; b < batch; ++b) {
        if (t >= len[b]) continue;  // frozen rows pass dh through
        for (int64_t k = b * hidden; k < (b + 1) * hidden; ++k) dh_p[k] = (dr ? vw[k] * dr[k] : vw[k]) + dz_p[k];
      }
    }
  });
  const at::Tensor d_rz = d_xp.view({-1, 3 * hidden}).narrow(1, 0, 2 * hidden);  // (T*B, 2H), row stride 3H
  const at::Tensor d_n = d_cand.view({-1, hidden});  // (T*B, H)
  const at::Tensor d_weight_hh = at::cat(
      {rnnkit::recurrent_weight_grad(d_rz, h0, hs_c, drop), rnnkit::recurrent_weight_grad(d_n, h0, hs_c, drop)});
  return {d_xp, dh, d_weight_hh, at::cat({d_rz.sum(0), d_n.sum(0)})};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_cpp, m) {
  m.def(
      "gru_forward(Tensor xp, Tensor h0, Tensor weight_hh, Tensor bias_hh, Tensor lengths, Tensor drop, "
      "Tensor zone, bool save) -> Tensor[]");
  m.def(
      "gru_backward(Tensor d_output, Tensor d_hn, Tensor h0, Tensor weight_hh, Tensor lengths, Tensor hs, "
      "Tensor acts, Tensor drop, Tensor zone) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_cpp, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}
