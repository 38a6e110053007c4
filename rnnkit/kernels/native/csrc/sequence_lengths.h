// The sequence lengths the C++ loops read: (B,) int64, or an empty tensor for "every sequence runs all
// T steps" (the eager path passes none rather than building a full tensor in Python at every call).
#pragma once

#include <ATen/ATen.h>

namespace rnnkit {

inline at::Tensor sequence_lengths(const at::Tensor& lengths, int64_t steps, int64_t batch) {
  if (lengths.numel() == 0) return at::full({batch}, steps, lengths.options().dtype(at::kLong));
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == batch, "lengths must be (", batch, ",), got ",
              lengths.sizes());
  return lengths.to(at::kLong).contiguous();
}

}  // namespace rnnkit
