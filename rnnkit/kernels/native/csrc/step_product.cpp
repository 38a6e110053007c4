// torch.ops.rnnkit_cpp.step_product_route: the route step_product.h takes for a weight, a batch and a
// number of steps ("small", "blas", "onednn" or "mkl"), and step_product_costs: the timings it chose by, so
// that tests and benchmarks can see the choice.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "step_product.h"

namespace {

std::string step_product_route(const at::Tensor& weight, int64_t batch, int64_t steps) {
  TORCH_CHECK(weight.dim() == 2, "step_product_route: weight must be (N, K), got ", weight.sizes());
  return rnnkit::kRouteNames[static_cast<int>(rnnkit::StepProduct(weight, batch, steps).route())];
}

// (2, 4) float64: seconds per product (row 0) and per call (row 1) of the routes small, blas, onednn, mkl.
at::Tensor step_product_costs(const at::Tensor& weight, int64_t batch) {
  TORCH_CHECK(weight.dim() == 2, "step_product_costs: weight must be (N, K), got ", weight.sizes());
  const rnnkit::RouteCosts costs = rnnkit::StepProduct::costs(weight, batch);
  at::Tensor out = at::empty({2, rnnkit::kRoutes}, at::kDouble);
  for (int r = 0; r < rnnkit::kRoutes; ++r) {
    out[0][r] = costs.per_step[r];
    out[1][r] = costs.setup[r];
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_cpp, m) {
  m.def("step_product_route(Tensor weight, int batch, int steps) -> str");
  m.def("step_product_costs(Tensor weight, int batch) -> Tensor");
}

TORCH_LIBRARY_IMPL(rnnkit_cpp, CPU, m) {
  m.impl("step_product_route", &step_product_route);
  m.impl("step_product_costs", &step_product_costs);
}
