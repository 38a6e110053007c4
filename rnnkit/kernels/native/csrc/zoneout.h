// Zoneout's keep weights as the C++ loops read them (rnnkit/kernels/zoneout.py documents the tensor):
// each state part becomes s_t = k s_{t-1} + (1 - k) s~_t, with k one constant (a 0-dim `zone`, eval mode),
// per step, part, row and unit (a (T, P, B, S) `zone` of 0/1 masks, training), or absent (empty `zone`).
#pragma once

#include <ATen/ATen.h>

#include <cmath>

namespace rnnkit {

template <typename T>
class ZoneoutKeep {
 public:
  ZoneoutKeep(const at::Tensor& zone, int64_t parts, int64_t batch, int64_t width)
      : on_(zone.numel() > 0), parts_(parts), batch_(batch), width_(width) {
    if (!on_) return;
    if (zone.dim() == 0) {
      value_ = zone.item<T>();
    } else {
      TORCH_CHECK(zone.dim() == 4 && zone.size(1) == parts && zone.size(2) == batch && zone.size(3) == width,
                  "zone must be 0-dim or (T, ", parts, ", ", batch, ", ", width, "), got ", zone.sizes());
      data_ = zone.data_ptr<T>();
    }
  }

  bool on() const { return on_; }
  T value() const { return value_; }

  // Step t's weights of one part for row b (S values), or null when they are one constant (or off).
  const T* row(int64_t t, int64_t part, int64_t b) const {
    return data_ ? data_ + ((t * parts_ + part) * batch_ + b) * width_ : nullptr;
  }

  // s[j] <- k s_prev[j] + (1 - k) s[j] for row b's n units, rounded as torch.lerp(s, s_prev, k).
  void mix(T* s, const T* prev, int64_t t, int64_t part, int64_t b, int64_t n) const {
    const T* k = row(t, part, b);
    for (int64_t j = 0; j < n; ++j) {
      const T w = weight(k, j);
      s[j] = std::abs(w) < T(0.5) ? s[j] + w * (prev[j] - s[j]) : prev[j] - (prev[j] - s[j]) * (T(1) - w);
    }
  }

  // The mix's backward for unit j of a row (k = row(...)): g, the gradient of the mixed state, keeps
  // (1 - k) g, the part into the update s~_t; returns k g, the part straight into s_{t-1} (0 when off).
  T split(T& g, const T* k, int64_t j) const {
    if (!on_) return T(0);
    const T w = weight(k, j);
    const T kept = g * w;
    g *= T(1) - w;
    return kept;
  }

 private:
  T weight(const T* k, int64_t j) const { return k ? k[j] : value_; }

  bool on_;
  int64_t parts_, batch_, width_;
  T value_ = T(0);
  const T* data_ = nullptr;
};

}  // namespace rnnkit
