// The LSTM time loop of the cpu backend in C++ (issue 13): per step one GEMM for the recurrent product
// and one fused pointwise pass, no Python or dispatcher work in between. Same inputs, outputs and
// semantics as rnnkit/kernels/cpu_lstm.py (the Python loop it replaces, kept as the fallback):
//   xp (T, B, 4H) = x W_ih^T + b_ih + b_hh, gate order i, f, C~, o as torch.nn.LSTM;
//   past a sequence's length its state is frozen and its output is zero;
//   drop (B, H) multiplies h_{t-1} in the recurrent product (recurrent dropout), or is empty.
// Registered as torch.ops.rnnkit_cpp.* (no Python binding needed).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kGrain = 8192;  // pointwise elements per thread before splitting the work

// One step's pointwise work after g = xp_t + W_hh h_{t-1} is in `g` (B, 4H), row b active if
// t < lengths[b]. The transcendental functions run through ATen's vectorized kernels (a scalar
// std::tanh per element is ~10x slower at H >= 256); the rest is one fused pass. Activates g in
// place; writes C_t, tanh C_t (of the unfrozen C_t), h_t (frozen past the end) and the output (zero
// past the end).
template <typename T>
void lstm_pointwise(const at::Tensor& g_t, const at::Tensor& c_prev_t, const at::Tensor& h_prev_t,
                    const at::Tensor& c_out_t, const at::Tensor& tanh_out_t, const at::Tensor& h_out_t,
                    const at::Tensor& out_t, const int64_t* lengths, int64_t t, int64_t batch, int64_t hidden) {
  g_t.narrow(1, 0, 2 * hidden).sigmoid_();  // i_t, f_t
  g_t.narrow(1, 2 * hidden, hidden).tanh_();  // C~_t
  g_t.narrow(1, 3 * hidden, hidden).sigmoid_();  // o_t
  const T* g = g_t.data_ptr<T>();
  const T* c_prev = c_prev_t.data_ptr<T>();
  const T* h_prev = h_prev_t.data_ptr<T>();
  T* c_out = c_out_t.data_ptr<T>();
  at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const T* row = g + (k / hidden) * 4 * hidden;
      const int64_t j = k % hidden;
      c_out[k] = row[hidden + j] * c_prev[k] + row[j] * row[2 * hidden + j];  // C_t = f C_{t-1} + i C~
    }
  });
  at::Tensor tanh_dst = tanh_out_t;  // a handle: tanh_out writes through it
  at::tanh_out(tanh_dst, c_out_t);  // tanh(C_t), of the unfrozen C_t
  const T* tanh_out = tanh_out_t.data_ptr<T>();
  T* h_out = h_out_t.data_ptr<T>();
  T* out = out_t.data_ptr<T>();
  at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t b = k / hidden, j = k % hidden;
      if (t < lengths[b]) {
        h_out[k] = g[b * 4 * hidden + 3 * hidden + j] * tanh_out[k];  // h_t = o * tanh(C_t)
        out[k] = h_out[k];
      } else {  // past the end: the state is frozen, the output zero
        c_out[k] = c_prev[k];
        h_out[k] = h_prev[k];
        out[k] = T(0);
      }
    }
  });
}

// Forward. With `save`, returns (output, h_n, c_n, hs, gates, cells, tanh_cells) as the Python op;
// without, (output, h_n, c_n) and only one step's buffers are kept.
std::vector<at::Tensor> lstm_forward(const at::Tensor& xp_in, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& weight_hh, const at::Tensor& lengths_in,
                                     const at::Tensor& drop, bool save) {
  TORCH_CHECK(xp_in.dim() == 3 && xp_in.size(2) % 4 == 0, "lstm_forward: xp must be (T, B, 4H)");
  const at::Tensor xp = xp_in.contiguous();
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = xp.size(2) / 4;
  const at::Tensor lengths = lengths_in.to(at::kLong).contiguous();
  const bool dropping = drop.numel() > 0;
  const at::Tensor w_t = weight_hh.t();  // (H, 4H)
  at::Tensor output = at::empty({steps, batch, hidden}, xp.options());
  at::Tensor gates = at::empty({save ? steps : 1, batch, 4 * hidden}, xp.options());
  at::Tensor hs = at::empty({save ? steps : 2, batch, hidden}, xp.options());
  at::Tensor cells = at::empty({save ? steps : 2, batch, hidden}, xp.options());
  at::Tensor tanh_cells = at::empty({save ? steps : 1, batch, hidden}, xp.options());
  at::Tensor h0c = h0.contiguous(), c0c = c0.contiguous();
  at::Tensor dropped = dropping ? at::empty({batch, hidden}, xp.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnkit_lstm_forward", [&] {
    const int64_t* len = lengths.data_ptr<int64_t>();
    at::Tensor h = h0c, c = c0c;
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t s = save ? t : 0;
      const int64_t slot = save ? t : (t + 1) % 2;  // ping-pong h and C without saving
      at::Tensor g = gates[s];
      if (dropping) {
        at::mul_out(dropped, h, drop);
        at::addmm_out(g, xp[t], dropped, w_t);  // (B, 4H): xp_t + (h_{t-1} * drop) W_hh^T
      } else {
        at::addmm_out(g, xp[t], h, w_t);  // (B, 4H): xp_t + h_{t-1} W_hh^T
      }
      at::Tensor h_t = hs[slot], c_t = cells[slot];
      lstm_pointwise<scalar_t>(g, c, h, c_t, tanh_cells[s], h_t, output[t], len, t, batch, hidden);
      h = h_t;
      c = c_t;
    }
    h0c = h.clone();  // h_n, C_n
    c0c = c.clone();
  });
  if (!save) return {output, h0c, c0c};
  return {output, h0c, c0c, hs, gates, cells, tanh_cells};
}

// Backward through the saved activations: (d_xp, d_h0, d_c0, d_weight_hh).
std::vector<at::Tensor> lstm_backward(const at::Tensor& d_output_in, const at::Tensor& d_hn, const at::Tensor& d_cn,
                                      const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& weight_hh,
                                      const at::Tensor& lengths_in, const at::Tensor& hs, const at::Tensor& gates,
                                      const at::Tensor& cells, const at::Tensor& tanh_cells, const at::Tensor& drop) {
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = gates.size(2) / 4;
  const at::Tensor d_output = d_output_in.contiguous();
  const at::Tensor lengths = lengths_in.to(at::kLong).contiguous();
  const bool dropping = drop.numel() > 0;
  const at::Tensor w = weight_hh.contiguous();  // (4H, H): dG_t W_hh -> dL/dh_{t-1}
  at::Tensor d_gates = at::empty_like(gates);  // (T, B, 4H)
  at::Tensor dh = d_hn.contiguous().clone(), dc = d_cn.contiguous().clone();  // from the future
  at::Tensor via_w = at::empty_like(dh);
  const at::Tensor c0c = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "rnnkit_lstm_backward", [&] {
    const int64_t* len = lengths.data_ptr<int64_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* dc_p = dc.data_ptr<scalar_t>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      const scalar_t* gate = gates[t].data_ptr<scalar_t>();
      const scalar_t* tc_p = tanh_cells[t].data_ptr<scalar_t>();
      const scalar_t* cprev = t > 0 ? cells[t - 1].data_ptr<scalar_t>() : c0c.data_ptr<scalar_t>();
      const scalar_t* dout = d_output[t].data_ptr<scalar_t>();
      scalar_t* dg = d_gates[t].data_ptr<scalar_t>();
      at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t b = k / hidden, j = k % hidden;
          const scalar_t* row = gate + b * 4 * hidden;
          scalar_t* drow = dg + b * 4 * hidden;
          if (t >= len[b]) {  // frozen: nothing flows into this step's gates
            drow[j] = drow[hidden + j] = drow[2 * hidden + j] = drow[3 * hidden + j] = scalar_t(0);
            continue;
          }
          const scalar_t i = row[j], f = row[hidden + j], cand = row[2 * hidden + j], o = row[3 * hidden + j];
          const scalar_t tc = tc_p[k];
          const scalar_t h_grad = dh_p[k] + dout[k];
          const scalar_t c_grad = dc_p[k] + h_grad * o * (scalar_t(1) - tc * tc);  // dL/dC_t
          drow[3 * hidden + j] = h_grad * tc * o * (scalar_t(1) - o);  // d o_pre
          drow[j] = c_grad * cand * i * (scalar_t(1) - i);  // d i_pre
          drow[hidden + j] = c_grad * cprev[k] * f * (scalar_t(1) - f);  // d f_pre
          drow[2 * hidden + j] = c_grad * i * (scalar_t(1) - cand * cand);  // d C~_pre
          dc_p[k] = c_grad * f;  // into C_{t-1}
        }
      });
      at::mm_out(via_w, d_gates[t], w);  // (B, H): into h_{t-1} through W_hh
      const scalar_t* vw = via_w.data_ptr<scalar_t>();
      const scalar_t* dr = dropping ? drop.data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t b = k / hidden;
          if (t < len[b]) dh_p[k] = dr ? vw[k] * dr[k] : vw[k];  // frozen rows pass dh through
        }
      });
    }
  });
  at::Tensor h_prev = at::cat({h0.unsqueeze(0), hs.slice(0, 0, steps - 1)});  // (T, B, H): h_{t-1}
  if (dropping) h_prev = h_prev * drop;  // what the product saw
  at::Tensor d_weight_hh = at::mm(d_gates.reshape({-1, 4 * hidden}).t(), h_prev.reshape({-1, hidden}));
  return {d_gates, dh, dc, d_weight_hh};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_cpp, m) {
  m.def("lstm_forward(Tensor xp, Tensor h0, Tensor c0, Tensor weight_hh, Tensor lengths, Tensor drop, bool save) -> Tensor[]");
  m.def(
      "lstm_backward(Tensor d_output, Tensor d_hn, Tensor d_cn, Tensor h0, Tensor c0, Tensor weight_hh, "
      "Tensor lengths, Tensor hs, Tensor gates, Tensor cells, Tensor tanh_cells, Tensor drop) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_cpp, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
