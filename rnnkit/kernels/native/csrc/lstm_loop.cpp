// The LSTM time loop of the native backend in C++ (issue 13): per step one recurrent product
// (step_product.h) and one pass over the rows (vec_math.h), no Python in between. Same inputs, outputs and
// semantics as rnnkit/kernels/native/lstm.py (the Python loop it replaces, kept as the fallback):
//   xp (T, B, 4H) = x W_ih^T + b_ih + b_hh, gate order i, f, C~, o as torch.nn.LSTM;
//   past a sequence's length its state is frozen and its output is zero;
//   drop (B, H) multiplies h_{t-1} in the recurrent product (recurrent dropout), or is empty;
//   zone holds zoneout's keep weights for the parts (h, C) (zoneout.h), or is empty.
// Registered as torch.ops.rnnkit_cpp.* (no Python binding needed).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "lstm_gates.h"
#include "sequence_lengths.h"
#include "step_product.h"
#include "vec_math.h"
#include "zoneout.h"

namespace {

constexpr int64_t kGrain = 8192;  // pointwise elements per thread before splitting the work

// Rows [begin, end) of one step's state update from the activated gates g (B, 4H: i, f, C~, o): for a
// row with t < lengths[b] writes
//   C_t = f C_{t-1} + i C~,  tanh C_t,  h_t = o tanh C_t,  output_t = h_t;
// past its length the row's state is frozen (C_t = C_{t-1}, h_t = h_{t-1}) and its output zero.
// With zoneout (keep) each part then becomes k s_{t-1} + (1 - k) s~_t; tanh_out keeps tanh of the update.
template <typename T>
void lstm_state_rows(const T* g, const T* c_prev, const T* h_prev, T* c_out, T* tanh_out, T* h_out, T* out,
                     const int64_t* lengths, const rnnkit::ZoneoutKeep<T>& keep, int64_t t, int64_t hidden,
                     int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    const int64_t k0 = b * hidden;
    if (t >= lengths[b]) {
      std::memcpy(c_out + k0, c_prev + k0, hidden * sizeof(T));
      std::memcpy(h_out + k0, h_prev + k0, hidden * sizeof(T));
      std::fill(out + k0, out + k0 + hidden, T(0));
      continue;
    }
    const T* i = g + b * 4 * hidden;
    const T* f = i + hidden;
    const T* cand = i + 2 * hidden;
    const T* o = i + 3 * hidden;
    T* c = c_out + k0;
    const T* cp = c_prev + k0;
    for (int64_t j = 0; j < hidden; ++j) c[j] = f[j] * cp[j] + i[j] * cand[j];  // C_t
    T* tc = tanh_out + k0;
    rnnkit::tanh_n(c, tc, hidden);  // tanh C_t
    T* h = h_out + k0;
    for (int64_t j = 0; j < hidden; ++j) h[j] = o[j] * tc[j];  // h_t
    if (keep.on()) {
      keep.mix(h, h_prev + k0, t, 0, b, hidden);
      keep.mix(c, cp, t, 1, b, hidden);
    }
    std::memcpy(out + k0, h, hidden * sizeof(T));
  }
}

// Rows [begin, end) of one step's pointwise work, from x = xp_t, p = h_{t-1} W_hh^T (B, 4H) and the
// bias (4H): the activated gates i, f, C~, o into g (what backward needs; rows past their length skip
// them), then lstm_state_rows.
template <typename T>
void lstm_rows(const T* x, const T* p, const T* bias, T* g, const T* c_prev, const T* h_prev, T* c_out,
               T* tanh_out, T* h_out, T* out, const int64_t* lengths, const rnnkit::ZoneoutKeep<T>& keep, int64_t t,
               int64_t hidden, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    if (t >= lengths[b]) continue;
    T* row = g + b * 4 * hidden;  // (4H): i, f, C~, o
    const T* xr = x + b * 4 * hidden;
    const T* pr = p + b * 4 * hidden;
    for (int64_t j = 0; j < 4 * hidden; ++j) row[j] = xr[j] + pr[j] + bias[j];  // pre-activations
    rnnkit::sigmoid_n(row, row, 2 * hidden);  // i_t, f_t
    rnnkit::tanh_n(row + 2 * hidden, row + 2 * hidden, hidden);  // C~_t
    rnnkit::sigmoid_n(row + 3 * hidden, row + 3 * hidden, hidden);  // o_t
  }
  lstm_state_rows<T>(g, c_prev, h_prev, c_out, tanh_out, h_out, out, lengths, keep, t, hidden, begin, end);
}

// The fused gates of rows [begin, end) (lstm_gates.h): float32 only, where fused_gates_apply() held.
void fused_gates_rows(const float* a, const at::Tensor& packed, const float* x, const float* bias, float* g,
                      int64_t hidden, int64_t begin, int64_t end) {
  rnnkit::lstm_gates_rows(a, packed.data_ptr<float>(), x, bias, g, hidden, begin, end);
}
void fused_gates_rows(const double*, const at::Tensor&, const double*, const double*, double*, int64_t, int64_t,
                      int64_t) {
  TORCH_CHECK(false, "the fused LSTM gates are float32 only");
}

// Whether the small route's LSTM step may run fused (lstm_gates.h); RNNKIT_FUSED_GATES=0 turns it off
// (read at every call: tests and benchmarks compare both).
bool fused_gates_enabled() {
  const char* flag = std::getenv("RNNKIT_FUSED_GATES");
  return flag == nullptr || std::string(flag) != "0";
}

// Forward over xp + bias (bias: (4H), added to every step's pre-activations). With `save`, returns
// (output, h_n, c_n, hs, gates, cells, tanh_cells) as the Python op; without, (output, h_n, c_n) and
// only one step's buffers are kept. Per step: one product into a fixed buffer (step_product.h) and one
// pass over the rows with raw pointers.
// `route`: the step product's route (LoopRoutes' choice), or none for the product's own.
std::vector<at::Tensor> lstm_forward_with(const at::Tensor& xp_in, const at::Tensor& h0, const at::Tensor& c0,
                                          const at::Tensor& weight_hh, const at::Tensor& bias_in,
                                          const at::Tensor& lengths_in, const at::Tensor& drop,
                                          const at::Tensor& zone, bool save, std::optional<rnnkit::Route> route) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // the inner calls are not recorded anyway
  const at::Tensor xp = xp_in.contiguous();
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = xp.size(2) / 4;
  const int64_t state = batch * hidden;
  const at::Tensor lengths = rnnkit::sequence_lengths(lengths_in, steps, batch);
  const bool dropping = drop.numel() > 0;
  const at::Tensor zone_c = zone.contiguous();
  // float32 on AVX-512, small route: the product and the activations in one register-tiled pass
  const bool may_fuse = rnnkit::fused_gates_apply(weight_hh) && fused_gates_enabled();
  // h W_hh^T, (B, H) -> (B, 4H); without gradients the prepared W_hh is kept for the next call
  const rnnkit::StepProduct product(weight_hh, batch, steps, false, may_fuse ? &rnnkit::lstm_gates_kernel() : nullptr,
                                    !save, route);
  const bool fused = may_fuse && product.route() == rnnkit::Route::kSmall;
  const auto opts = xp.options();
  at::Tensor output = at::empty({steps, batch, hidden}, opts);
  at::Tensor gates = at::empty({save ? steps : 1, batch, 4 * hidden}, opts);
  at::Tensor hs = at::empty({save ? steps : 2, batch, hidden}, opts);
  at::Tensor cells = at::empty({save ? steps : 2, batch, hidden}, opts);
  at::Tensor tanh_cells = at::empty({save ? steps : 1, batch, hidden}, opts);
  at::Tensor g = at::empty({batch, 4 * hidden}, opts);  // the activated gates when not saved
  at::Tensor prod = at::empty({batch, 4 * hidden}, opts);  // the GEMM's output, every step
  // the product's input: h_{t-1} itself (a view of h0 or hs), or h_{t-1} * drop in this buffer
  at::Tensor dropped = at::empty({dropping ? batch : 0, hidden}, opts);
  const at::Tensor drop_c = dropping ? drop.contiguous() : drop;
  const at::Tensor h0c = h0.contiguous(), c0c = c0.contiguous();
  const at::Tensor bias = bias_in.contiguous();
  at::Tensor h_n = at::empty({batch, hidden}, opts), c_n = at::empty({batch, hidden}, opts);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnkit_lstm_forward", [&] {
    using T = scalar_t;
    const int64_t* len = lengths.data_ptr<int64_t>();
    const T* x = xp.data_ptr<T>();
    const T* bias_p = bias.data_ptr<T>();
    const T* dr = dropping ? drop_c.data_ptr<T>() : nullptr;
    T* g_p = g.data_ptr<T>();
    T* dropped_p = dropped.data_ptr<T>();
    at::Tensor h_prev = h0c;  // h_{t-1} as a tensor
    const at::Tensor ping_pong[2] = {hs.select(0, 0), hs.select(0, 1 % hs.size(0))};  // views made once
    T* gates_p = gates.data_ptr<T>();
    T* hs_p = hs.data_ptr<T>();
    T* cells_p = cells.data_ptr<T>();
    T* tanh_p = tanh_cells.data_ptr<T>();
    T* out_p = output.data_ptr<T>();
    const T* h = h0c.data_ptr<T>();
    const T* c = c0c.data_ptr<T>();
    const int64_t rows_grain = std::max<int64_t>(1, kGrain / (4 * hidden));
    const rnnkit::ZoneoutKeep<T> keep(zone_c, 2, batch, hidden);
    // small route: whole sequences of a block of rows per thread; else one product per step for all rows
    const bool row_blocks = product.route() == rnnkit::Route::kSmall;
    if (row_blocks) {
      // Whole sequences of a block of rows per thread: a row's h_t needs only its own h_{t-1}, so the
      // threads never wait for each other between steps (one parallel region per call, not per step).
      T* prod_p = prod.data_ptr<T>();
      const at::Tensor& packed = product.prepared();  // W_hh by blocks of units (lstm_gates.h), if fused
      at::parallel_for(0, batch, rnnkit::StepProduct::kRowGrain, [&](int64_t begin, int64_t end) {
        const T* h_r = h;  // h_{t-1}, C_{t-1} of these rows (at row offsets of the full arrays)
        const T* c_r = c;
        for (int64_t t = 0; t < steps; ++t) {
          const int64_t slot = save ? t : t % 2;
          const T* a = h_r;
          if (dropping) {
            for (int64_t k = begin * hidden; k < end * hidden; ++k) dropped_p[k] = h_r[k] * dr[k];
            a = dropped_p;
          }
          T* h_t = hs_p + slot * state;
          T* c_t = cells_p + slot * state;
          T* gate = save ? gates_p + t * 4 * state : g_p;
          T* tc_t = tanh_p + (save ? t : 0) * state;
          if (fused) {
            fused_gates_rows(a, packed, x + t * 4 * state, bias_p, gate, hidden, begin, end);
            lstm_state_rows<T>(gate, c_r, h_r, c_t, tc_t, h_t, out_p + t * state, len, keep, t, hidden, begin, end);
            h_r = h_t;
            c_r = c_t;
            continue;
          }
          product.apply_rows<T>(a, prod_p, begin, end);  // (rows, 4H): (h_{t-1} [* drop]) W_hh^T
          lstm_rows<T>(x + t * 4 * state, prod_p, bias_p, gate, c_r, h_r, c_t, tc_t, h_t, out_p + t * state, len,
                       keep, t, hidden, begin, end);
          h_r = h_t;
          c_r = c_t;
        }
      });
      if (steps > 0) {
        const int64_t last = save ? steps - 1 : (steps - 1) % 2;
        h = hs_p + last * state;
        c = cells_p + last * state;
      }
    }
    for (int64_t t = 0; t < steps && !row_blocks; ++t) {
      const int64_t slot = save ? t : t % 2;  // ping-pong h and C without saving
      if (dropping) {
        for (int64_t k = 0; k < state; ++k) dropped_p[k] = h[k] * dr[k];
      }
      // (B, 4H): (h_{t-1} [* drop]) W_hh^T
      const at::Tensor product_out = product.apply<T>(dropping ? dropped : h_prev, prod);
      const T* prod_p = product_out.data_ptr<T>();  // held above: oneDNN returns a new tensor
      T* gate = save ? gates_p + t * 4 * state : g_p;
      T* h_t = hs_p + slot * state;
      T* c_t = cells_p + slot * state;
      T* tc_t = tanh_p + (save ? t : 0) * state;
      at::parallel_for(0, batch, rows_grain, [&](int64_t begin, int64_t end) {
        lstm_rows<T>(x + t * 4 * state, prod_p, bias_p, gate, c, h, c_t, tc_t, h_t, out_p + t * state, len, keep,
                     t, hidden, begin, end);
      });
      h = h_t;
      h_prev = save ? hs.select(0, slot) : ping_pong[slot];
      c = c_t;
    }
    std::memcpy(h_n.data_ptr<T>(), h, state * sizeof(T));
    std::memcpy(c_n.data_ptr<T>(), c, state * sizeof(T));
  });
  if (!save) return {output, h_n, c_n};
  return {output, h_n, c_n, hs, gates, cells, tanh_cells};
}

std::vector<at::Tensor> lstm_forward(const at::Tensor& xp, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& weight_hh, const at::Tensor& bias, const at::Tensor& lengths,
                                     const at::Tensor& drop, const at::Tensor& zone, bool save) {
  TORCH_CHECK(xp.dim() == 3 && xp.size(2) % 4 == 0, "lstm_forward: xp must be (T, B, 4H)");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == xp.size(2), "lstm_forward: bias must be (4H) = (", xp.size(2),
              "), got ", bias.sizes());
  const auto route = rnnkit::LoopRoutes::pick(
      save ? "lstm_forward_save" : "lstm_forward", xp.scalar_type(), xp.size(1), xp.size(2) / 4, xp.size(0),
      [&](rnnkit::Route r, int64_t steps) {  // the first steps, no lengths or masks: the same work per step
        const at::Tensor none = at::empty({0}, xp.options()), all_steps = at::empty({0}, lengths.options());
        lstm_forward_with(xp.narrow(0, 0, steps), h0, c0, weight_hh, bias, all_steps, none, none, save, r);
      });
  return lstm_forward_with(xp, h0, c0, weight_hh, bias, lengths, drop, zone, save, route);
}

// Rows [begin, end) of one backward step: from dL/dh_t (dh + d_output_t) and dL/dC_t (dc) to the
// pre-activation gradients dG_t (B, 4H); dc becomes dL/dC_{t-1} (through f_t, plus k_C dL/dC_t with
// zoneout), and dh becomes k_h dL/dh_t (the part that skips the update, 0 without zoneout; the caller
// adds the part through W_hh). Rows past their length get dG_t = 0 and keep dh, dc (the frozen state passes them).
template <typename T>
void lstm_backward_rows(const T* gate, const T* tanh_c, const T* c_prev, const T* d_out, T* dh, T* dc, T* dg,
                        const int64_t* lengths, const rnnkit::ZoneoutKeep<T>& keep, int64_t t, int64_t hidden,
                        int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    const int64_t k0 = b * hidden;
    T* drow = dg + b * 4 * hidden;
    if (t >= lengths[b]) {
      std::fill(drow, drow + 4 * hidden, T(0));
      continue;
    }
    const T* i = gate + b * 4 * hidden;
    const T* f = i + hidden;
    const T* cand = i + 2 * hidden;
    const T* o = i + 3 * hidden;
    const T* tc = tanh_c + k0;
    const T* cp = c_prev + k0;
    const T* dy = d_out + k0;
    T* dhr = dh + k0;
    T* dcr = dc + k0;
    const T* kh = keep.row(t, 0, b);  // zoneout's keep weights of h and C, or null
    const T* kc = keep.row(t, 1, b);
    for (int64_t j = 0; j < hidden; ++j) {
      T h_grad = dhr[j] + dy[j];  // dL/dh_t
      T c_carry = dcr[j];  // dL/dC_t from the future
      dhr[j] = keep.split(h_grad, kh, j);  // zoneout: the part that skips the update into h_{t-1}
      const T c_kept = keep.split(c_carry, kc, j);
      const T c_grad = c_carry + h_grad * o[j] * (T(1) - tc[j] * tc[j]);  // dL/dC~_t update
      drow[j] = c_grad * cand[j] * i[j] * (T(1) - i[j]);  // d i_pre
      drow[hidden + j] = c_grad * cp[j] * f[j] * (T(1) - f[j]);  // d f_pre
      drow[2 * hidden + j] = c_grad * i[j] * (T(1) - cand[j] * cand[j]);  // d C~_pre
      drow[3 * hidden + j] = h_grad * tc[j] * o[j] * (T(1) - o[j]);  // d o_pre
      dcr[j] = c_grad * f[j] + c_kept;  // into C_{t-1}
    }
  }
}

// Backward through the saved activations: (d_xp, d_h0, d_c0, d_weight_hh, d_bias).
std::vector<at::Tensor> lstm_backward_with(const at::Tensor& d_output_in, const at::Tensor& d_hn,
                                           const at::Tensor& d_cn, const at::Tensor& h0, const at::Tensor& c0,
                                           const at::Tensor& weight_hh, const at::Tensor& lengths_in,
                                           const at::Tensor& hs, const at::Tensor& gates, const at::Tensor& cells,
                                           const at::Tensor& tanh_cells, const at::Tensor& drop,
                                           const at::Tensor& zone, std::optional<rnnkit::Route> route) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = gates.size(2) / 4;
  const int64_t state = batch * hidden;
  const at::Tensor d_output = d_output_in.contiguous();
  const at::Tensor lengths = rnnkit::sequence_lengths(lengths_in, steps, batch);
  const bool dropping = drop.numel() > 0;
  const at::Tensor drop_c = dropping ? drop.contiguous() : drop;
  const rnnkit::StepProduct product(weight_hh.t(), batch, steps, false, nullptr, false, route);  // dG W_hh: (B, H)
  const at::Tensor gates_c = gates.contiguous(), cells_c = cells.contiguous(), tanh_c = tanh_cells.contiguous();
  at::Tensor d_gates = at::empty_like(gates_c);  // (T, B, 4H): each step's rows write dG_t here, the product reads it
  at::Tensor dh = d_hn.contiguous().clone(), dc = d_cn.contiguous().clone();  // from the future
  at::Tensor via_w = at::empty_like(dh);
  const at::Tensor c0c = c0.contiguous();
  const at::Tensor zone_c = zone.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "rnnkit_lstm_backward", [&] {
    using T = scalar_t;
    const int64_t* len = lengths.data_ptr<int64_t>();
    T* dh_p = dh.data_ptr<T>();
    T* dc_p = dc.data_ptr<T>();
    T* d_gates_p = d_gates.data_ptr<T>();
    const T* dr = dropping ? drop_c.data_ptr<T>() : nullptr;
    const T* gates_p = gates_c.data_ptr<T>();
    const T* cells_p = cells_c.data_ptr<T>();
    const T* tanh_p = tanh_c.data_ptr<T>();
    const T* dout_p = d_output.data_ptr<T>();
    const int64_t rows_grain = std::max<int64_t>(1, kGrain / (4 * hidden));
    const rnnkit::ZoneoutKeep<T> keep(zone_c, 2, batch, hidden);
    // dL/dh_{t-1} of rows [begin, end) gets the part through W_hh (vw: dG_t W_hh); frozen rows pass dh through
    auto add_via_w = [&](const T* vw, int64_t t, int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        if (t >= len[b]) continue;
        for (int64_t k = b * hidden; k < (b + 1) * hidden; ++k) dh_p[k] += dr ? vw[k] * dr[k] : vw[k];
      }
    };
    auto c_prev = [&](int64_t t) { return t > 0 ? cells_p + (t - 1) * state : c0c.data_ptr<T>(); };
    const bool row_blocks = product.route() == rnnkit::Route::kSmall;
    if (row_blocks) {  // whole sequences of a block of rows per thread
      T* vw_p = via_w.data_ptr<T>();
      at::parallel_for(0, batch, rnnkit::StepProduct::kRowGrain, [&](int64_t begin, int64_t end) {
        for (int64_t t = steps - 1; t >= 0; --t) {
          T* dg_t = d_gates_p + t * 4 * state;
          lstm_backward_rows<T>(gates_p + t * 4 * state, tanh_p + t * state, c_prev(t), dout_p + t * state, dh_p,
                                dc_p, dg_t, len, keep, t, hidden, begin, end);
          product.apply_rows<T>(dg_t, vw_p, begin, end);  // (rows, H): into h_{t-1} through W_hh
          add_via_w(vw_p, t, begin, end);
        }
      });
    }
    for (int64_t t = steps - 1; t >= 0 && !row_blocks; --t) {
      at::parallel_for(0, batch, rows_grain, [&](int64_t begin, int64_t end) {
        lstm_backward_rows<T>(gates_p + t * 4 * state, tanh_p + t * state, c_prev(t), dout_p + t * state, dh_p, dc_p,
                              d_gates_p + t * 4 * state, len, keep, t, hidden, begin, end);
      });
      const at::Tensor via_w_out = product.apply<T>(d_gates[t], via_w);  // (B, H): into h_{t-1} through W_hh
      add_via_w(via_w_out.data_ptr<T>(), t, 0, batch);  // held above: oneDNN returns a new tensor
    }
  });
  const at::Tensor d_pre = d_gates.view({-1, 4 * hidden});  // (T*B, 4H)
  const at::Tensor d_weight_hh = rnnkit::recurrent_weight_grad(d_pre, h0, hs, drop);
  return {d_gates, dh, dc, d_weight_hh, d_pre.sum(0)};
}

std::vector<at::Tensor> lstm_backward(const at::Tensor& d_output, const at::Tensor& d_hn, const at::Tensor& d_cn,
                                      const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& weight_hh,
                                      const at::Tensor& lengths, const at::Tensor& hs, const at::Tensor& gates,
                                      const at::Tensor& cells, const at::Tensor& tanh_cells, const at::Tensor& drop,
                                      const at::Tensor& zone) {
  const auto route = rnnkit::LoopRoutes::pick(
      "lstm_backward", gates.scalar_type(), gates.size(1), gates.size(2) / 4, gates.size(0),
      [&](rnnkit::Route r, int64_t steps) {  // the first steps of the real activations, no lengths or masks
        const at::Tensor none = at::empty({0}, gates.options()), all_steps = at::empty({0}, lengths.options());
        auto first = [&](const at::Tensor& t) { return t.narrow(0, 0, steps); };
        lstm_backward_with(first(d_output), d_hn, d_cn, h0, c0, weight_hh, all_steps, first(hs), first(gates),
                           first(cells), first(tanh_cells), none, none, r);
      });
  return lstm_backward_with(d_output, d_hn, d_cn, h0, c0, weight_hh, lengths, hs, gates, cells, tanh_cells, drop,
                            zone, route);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_cpp, m) {
  m.def(
      "lstm_forward(Tensor xp, Tensor h0, Tensor c0, Tensor weight_hh, Tensor bias, Tensor lengths, Tensor drop, "
      "Tensor zone, bool save) -> Tensor[]");
  m.def(
      "lstm_backward(Tensor d_output, Tensor d_hn, Tensor d_cn, Tensor h0, Tensor c0, Tensor weight_hh, "
      "Tensor lengths, Tensor hs, Tensor gates, Tensor cells, Tensor tanh_cells, Tensor drop, Tensor zone) "
      "-> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_cpp, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
