// The per-step recurrent product of the compiled loops, c = a @ weight^T with one weight for all steps,
// through the fastest of three routes, chosen once per call:
//   small_gemm.h for small products (no dispatch, no packing: 2x ATen at B=8, H=64);
//   oneDNN with the weight packed once, for large products over many steps (float32 where torch has
//   oneDNN: ~10% faster per step than MKL at B=32, H=256 on this project's AMD machine, but packing
//   costs ~0.45 ms per call, and below B=32, H=256 the packed product is slower per step than ATen's:
//   70 against 22 us at B=32, H=64, so short sequences of small layers never pack; issue 30);
//   ATen's mm_out otherwise.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>

#include "small_gemm.h"

namespace rnnkit {

class StepProduct {
 public:
  // weight (N, K); every a will be (batch, K), for `steps` steps.
  StepProduct(const at::Tensor& weight, int64_t batch, int64_t steps)
      : batch_(batch), n_(weight.size(0)), k_(weight.size(1)), small_(batch_ * n_ * k_ <= kSmallGemmWork) {
    const int64_t work = batch_ * n_ * k_;
    if (work >= kPackWork && steps * work >= kPackTotalWork && weight.scalar_type() == at::kFloat) {
      packed_ = pack(weight.contiguous(), batch);
    }
    // small_gemm reads (K, N) contiguous; ATen's mm takes the transposed view as it is (no copy:
    // 0.33 ms per call at H=256, paid twice per layer before)
    if (!packed_) weight_t_ = small_ ? weight.t().contiguous() : weight.t();
  }

  // a (batch, K) @ weight^T (batch, N), a contiguous: written into c (preallocated, contiguous) and
  // returned, or (oneDNN) returned in a new tensor.
  template <typename T>
  at::Tensor apply(const at::Tensor& a, at::Tensor& c) const {
    if (small_) {
      small_gemm<T>(a.data_ptr<T>(), weight_t_.data_ptr<T>(), c.data_ptr<T>(), batch_, n_, k_);
    } else if (packed_) {
      static const auto linear = c10::Dispatcher::singleton()
                                     .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                                     .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                       const std::optional<at::Tensor>&, c10::string_view,
                                                       c10::List<std::optional<at::Scalar>>,
                                                       std::optional<c10::string_view>)>();
      return linear.call(a, *packed_, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), "");
    } else {
      at::mm_out(c, a, weight_t_);
    }
    return c;
  }

 private:
  // The weight in oneDNN's layout for this batch, or nothing where this torch has no such op.
  static std::optional<at::Tensor> pack(const at::Tensor& weight, int64_t batch) {
    const auto schema = c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (!schema.has_value() || !at::hasMKLDNN()) return std::nullopt;
    try {
      return schema->typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>().call(weight, batch);
    } catch (const c10::Error&) {  // an oneDNN build without this path: ATen's mm
      return std::nullopt;
    }
  }

  // oneDNN's packed product pays off from this much work per step (B=32, H=128 is 2^21) and in total
  // (T=50 at B=32, H=256 is 2^28.6; T=16 there is about break-even with the packing's cost)
  static constexpr int64_t kPackWork = int64_t(1) << 22;
  static constexpr int64_t kPackTotalWork = int64_t(1) << 27;

  int64_t batch_, n_, k_;
  bool small_;
  at::Tensor weight_t_;  // (K, N), unless packed
  std::optional<at::Tensor> packed_;
};

// The recurrent weight's gradient after the loop, sum_t dG_t^T (h_{t-1} [* drop]) over all steps:
// d_pre (T*B, N) the gradients of the product's outputs, step-major, any row stride (a column block
// of a wider matrix is fine); hs (T, B, H) the saved h_t (contiguous), h0 (B, H). Without a dropout
// mask no (T, B, H) copy of h_{t-1} is built: step 0 against h0, the rest in one GEMM against hs
// shifted by one step.
inline at::Tensor recurrent_weight_grad(const at::Tensor& d_pre, const at::Tensor& h0, const at::Tensor& hs,
                                        const at::Tensor& drop) {
  const int64_t steps = hs.size(0), batch = hs.size(1), hidden = hs.size(2);
  if (drop.numel() > 0) {
    const at::Tensor h_prev = at::cat({h0.unsqueeze(0), hs.slice(0, 0, steps - 1)}) * drop;  // what the product saw
    return at::mm(d_pre.t(), h_prev.reshape({-1, hidden}));
  }
  at::Tensor grad = at::mm(d_pre.narrow(0, 0, batch).t(), h0);  // (N, H)
  if (steps > 1) {
    grad.addmm_(d_pre.narrow(0, batch, (steps - 1) * batch).t(), hs.slice(0, 0, steps - 1).reshape({-1, hidden}));
  }
  return grad;
}

}  // namespace rnnkit
