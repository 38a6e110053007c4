// The GRU time loop of the cpu backend in C++ (issue 13): per step one GEMM and one fused pointwise
// pass. Same inputs, outputs and semantics as rnnkit/kernels/cpu_gru.py (the Python fallback):
//   xp (T, B, 3H) = x W_ih^T + b_ih, gate order r, z, n as torch.nn.GRU; b_hh stays inside (gated by r);
//   acts (T, B, 4H) saved: r_t, z_t, n_t and the recurrent candidate part W_hn h_{t-1} + b_hn;
//   past a sequence's length its state is frozen and its output is zero;
//   drop (B, H) multiplies h_{t-1} in the recurrent product (not in the carry), or is empty.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kGrain = 8192;

// Forward. With `save`: (output, h_n, hs, acts); without: (output, h_n).
std::vector<at::Tensor> gru_forward(const at::Tensor& xp_in, const at::Tensor& h0, const at::Tensor& weight_hh,
                                    const at::Tensor& bias_hh, const at::Tensor& lengths_in, const at::Tensor& drop,
                                    bool save) {
  TORCH_CHECK(xp_in.dim() == 3 && xp_in.size(2) % 3 == 0, "gru_forward: xp must be (T, B, 3H)");
  const at::Tensor xp = xp_in.contiguous();
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = xp.size(2) / 3;
  const at::Tensor lengths = lengths_in.to(at::kLong).contiguous();
  const bool dropping = drop.numel() > 0;
  const at::Tensor w_t = weight_hh.t();  // (H, 3H)
  at::Tensor output = at::empty({steps, batch, hidden}, xp.options());
  at::Tensor hs = at::empty({save ? steps : 2, batch, hidden}, xp.options());
  at::Tensor acts = at::empty({save ? steps : 1, batch, 4 * hidden}, xp.options());
  at::Tensor gh = at::empty({batch, 3 * hidden}, xp.options());
  at::Tensor dropped = dropping ? at::empty({batch, hidden}, xp.options()) : at::Tensor();
  at::Tensor h = h0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnkit_gru_forward", [&] {
    const int64_t* len = lengths.data_ptr<int64_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t slot = save ? t : (t + 1) % 2;
      if (dropping) {
        at::mul_out(dropped, h, drop);
        at::addmm_out(gh, bias_hh, dropped, w_t);  // (B, 3H): W_h{r,z,n} (h_{t-1} * drop) + b_h
      } else {
        at::addmm_out(gh, bias_hh, h, w_t);  // (B, 3H): W_h{r,z,n} h_{t-1} + b_h
      }
      const scalar_t* x = xp[t].data_ptr<scalar_t>();
      const scalar_t* g = gh.data_ptr<scalar_t>();
      const scalar_t* hp = h.data_ptr<scalar_t>();
      const at::Tensor act = acts[save ? t : 0];  // (B, 4H): r, z, n, W_hn h + b_hn
      scalar_t* a = act.data_ptr<scalar_t>();
      scalar_t* hn_out = hs[slot].data_ptr<scalar_t>();
      scalar_t* out = output[t].data_ptr<scalar_t>();
      // the transcendental functions through ATen's vectorized kernels, the rest in fused passes
      at::parallel_for(0, batch * 2 * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t b = k / (2 * hidden), j = k % (2 * hidden);
          a[b * 4 * hidden + j] = x[b * 3 * hidden + j] + g[b * 3 * hidden + j];  // r, z pre-activations
        }
      });
      act.narrow(1, 0, 2 * hidden).sigmoid_();  // r_t, z_t
      at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t b = k / hidden, j = k % hidden;
          scalar_t* ar = a + b * 4 * hidden;
          const scalar_t hn = g[b * 3 * hidden + 2 * hidden + j];
          ar[3 * hidden + j] = hn;
          ar[2 * hidden + j] = x[b * 3 * hidden + 2 * hidden + j] + ar[j] * hn;  // W_in x + r (W_hn h + b_hn)
        }
      });
      act.narrow(1, 2 * hidden, hidden).tanh_();  // n_t
      at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t b = k / hidden, j = k % hidden;
          const scalar_t* ar = a + b * 4 * hidden;
          if (t < len[b]) {
            const scalar_t n = ar[2 * hidden + j], z = ar[hidden + j];
            const scalar_t h_new = n + z * (hp[k] - n);  // h_t = (1 - z) n + z h_{t-1}
            hn_out[k] = h_new;
            out[k] = h_new;
          } else {
            hn_out[k] = hp[k];
            out[k] = scalar_t(0);
          }
        }
      });
      h = hs[slot];
    }
  });
  at::Tensor h_n = h.clone();
  if (!save) return {output, h_n};
  return {output, h_n, hs, acts};
}

// Backward: (d_xp, d_h0, d_weight_hh, d_bias_hh).
std::vector<at::Tensor> gru_backward(const at::Tensor& d_output_in, const at::Tensor& d_hn, const at::Tensor& h0,
                                     const at::Tensor& weight_hh, const at::Tensor& lengths_in, const at::Tensor& hs,
                                     const at::Tensor& acts, const at::Tensor& drop) {
  const int64_t steps = acts.size(0), batch = acts.size(1), hidden = acts.size(2) / 4;
  const at::Tensor d_output = d_output_in.contiguous();
  const at::Tensor lengths = lengths_in.to(at::kLong).contiguous();
  const bool dropping = drop.numel() > 0;
  const at::Tensor w = weight_hh.contiguous();  // (3H, H)
  at::Tensor d_xp = at::empty({steps, batch, 3 * hidden}, acts.options());  // d(x-side) r, z, n
  at::Tensor d_gh = at::empty({steps, batch, 3 * hidden}, acts.options());  // d(h-side) r, z, hn
  at::Tensor dh = d_hn.contiguous().clone();
  at::Tensor dh_z = at::empty_like(dh);
  at::Tensor via_w = at::empty_like(dh);
  const at::Tensor h0c = h0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "rnnkit_gru_backward", [&] {
    const int64_t* len = lengths.data_ptr<int64_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* dz_p = dh_z.data_ptr<scalar_t>();
    const scalar_t* dr = dropping ? drop.data_ptr<scalar_t>() : nullptr;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const scalar_t* a = acts[t].data_ptr<scalar_t>();
      const scalar_t* hp = t > 0 ? hs[t - 1].data_ptr<scalar_t>() : h0c.data_ptr<scalar_t>();
      const scalar_t* dout = d_output[t].data_ptr<scalar_t>();
      scalar_t* dx = d_xp[t].data_ptr<scalar_t>();
      scalar_t* dg = d_gh[t].data_ptr<scalar_t>();
      at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t b = k / hidden, j = k % hidden;
          scalar_t* dxr = dx + b * 3 * hidden;
          scalar_t* dgr = dg + b * 3 * hidden;
          if (t >= len[b]) {  // frozen: nothing flows into this step's gates
            dxr[j] = dxr[hidden + j] = dxr[2 * hidden + j] = scalar_t(0);
            dgr[j] = dgr[hidden + j] = dgr[2 * hidden + j] = scalar_t(0);
            continue;
          }
          const scalar_t* ar = a + b * 4 * hidden;
          const scalar_t r = ar[j], z = ar[hidden + j], n = ar[2 * hidden + j], hn = ar[3 * hidden + j];
          const scalar_t grad = dh_p[k] + dout[k];
          dz_p[k] = grad * z;  // the direct path z * dh into h_{t-1}
          const scalar_t dn = (grad - grad * z) * (scalar_t(1) - n * n);  // d n_pre
          const scalar_t d_r = dn * hn * r * (scalar_t(1) - r);  // d r_pre
          const scalar_t d_z = (hp[k] - n) * grad * z * (scalar_t(1) - z);  // d z_pre
          dxr[j] = d_r;
          dxr[hidden + j] = d_z;
          dxr[2 * hidden + j] = dn;
          dgr[j] = d_r;
          dgr[hidden + j] = d_z;
          dgr[2 * hidden + j] = dn * r;  // d(W_hn h + b_hn)
        }
      });
      at::mm_out(via_w, d_gh[t], w);  // (B, H): into h_{t-1} (* drop) through W_hh
      const scalar_t* vw = via_w.data_ptr<scalar_t>();
      at::parallel_for(0, batch * hidden, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          if (t < len[k / hidden]) dh_p[k] = (dr ? vw[k] * dr[k] : vw[k]) + dz_p[k];  // frozen rows pass dh
        }
      });
    }
  });
  at::Tensor h_prev = at::cat({h0.unsqueeze(0), hs.slice(0, 0, steps - 1)});  // (T, B, H): h_{t-1}
  if (dropping) h_prev = h_prev * drop;
  at::Tensor d_gh_flat = d_gh.reshape({-1, 3 * hidden});
  at::Tensor d_weight_hh = at::mm(d_gh_flat.t(), h_prev.reshape({-1, hidden}));  // one GEMM, all steps
  return {d_xp, dh, d_weight_hh, d_gh_flat.sum(0)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_cpp, m) {
  m.def("gru_forward(Tensor xp, Tensor h0, Tensor weight_hh, Tensor bias_hh, Tensor lengths, Tensor drop, bool save) -> Tensor[]");
  m.def(
      "gru_backward(Tensor d_output, Tensor d_hn, Tensor h0, Tensor weight_hh, Tensor lengths, Tensor hs, "
      "Tensor acts, Tensor drop) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_cpp, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}
