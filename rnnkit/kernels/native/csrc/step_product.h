// The per-step recurrent product of the compiled loops, c = a @ weight^T with one weight for all steps,
// through one of four routes, chosen per call from timings taken once per process and shape:
//   small:  small_gemm.h (no dispatch, no packing; wins at B=8, H=64); rows being independent, the
//           loops then run whole sequences of a block of rows per thread, no join between steps;
//   blas:   ATen's mm_out (MKL or OpenBLAS) against the weight transposed once into a contiguous (K, N) copy;
//   onednn: oneDNN with the weight packed once for this batch (float32 where torch has oneDNN);
//   mkl:    MKL's packed GEMM (cblas_sgemm_pack once, sgemm_compute per step; float32 where torch has MKL).
// Which is fastest depends on the machine, not only on the shape. Measured per step (us) on a 2-core
// Intel Ice Lake: at B=32, H=256 (N = 4H) mkl 62, blas 104, onednn 100-150, and mm against the
// transposed *view* 307-369 (MKL then copies the weight at every call); at B=64, H=512 mkl 638, blas
// 700-900, onednn 620-720; at B=8, H=64 small 3-5, blas 4-6, mkl 14. On the project's earlier 2-core
// AMD Zen 4 onednn won from B=32, H=256 and the view cost nothing extra. So the first call at a shape times each route (1 warm-up
// and 5 timed rounds, the fastest kept, plus the route's one-off cost per call: the transposed copy
// or the packing) and every call takes the route with the least total for its number of steps
// (cuDNN's benchmark mode does the same). The routes differ only in the order of a sum (fp32 results
// in the last bits). RNNKIT_STEP_PRODUCT=small|blas|onednn|mkl forces one (tests run each; where a packed
// route is unavailable it falls back to blas).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <cstring>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "small_gemm.h"

namespace rnnkit {

enum class Route : int { kSmall = 0, kBlas = 1, kOnednn = 2, kMkl = 3 };
constexpr int kRoutes = 4;
constexpr const char* kRouteNames[kRoutes] = {"small", "blas", "onednn", "mkl"};

// A caller's own kernel for the small route, which computes more than the product (the LSTM's fused
// gates, lstm_gates.h): timed in small_gemm's place, its `name` part of the timings' cache key.
// `prepare` turns the weight (N, K) into what `rows` reads; `rows` runs rows [begin, end) of one step
// from a (B, K) into c (B, N), as the loop would (c's values on entry do not matter).
struct SmallKernel {
  const char* name;
  std::function<at::Tensor(const at::Tensor& weight)> prepare;
  std::function<void(const at::Tensor& prepared, const at::Tensor& a, at::Tensor& c, int64_t begin, int64_t end)>
      rows;
};

// What one route costs at one shape, in seconds: per product and once per call (setup).
struct RouteCosts {
  double per_step[kRoutes];
  double setup[kRoutes];
};

// What a route prepared from one weight (its transposed copy, packed form or the caller's layout).
struct PreparedWeight {
  at::Tensor weight_t;  // (K, N) contiguous (small, blas)
  at::Tensor weight;  // (N, K) contiguous (mkl: its fallback for another batch size)
  at::Tensor own;  // the caller's kernel's layout (small route with a SmallKernel)
  std::optional<at::Tensor> packed;  // onednn's or mkl's packed weight
};

// Prepared weights kept from one call to the next, for calls that pass the same weight values again
// (inference with fixed weights: the packing costs ~0.1 ms a layer at H = 128, a tenth of a short
// sequence's forward). An entry is found by the weight's address and shape, the route and the batch,
// and used only when the weight's bytes still equal the copy kept with it (a memcmp, ~20x cheaper than
// packing): a weight changed in place, through .data or not, or freed and its memory reused, misses.
// The oldest entries go beyond kMaxBytes (copies and prepared forms together).
class PreparedCache {
 public:
  using Key = std::tuple<const void*, int, int64_t, int64_t, int64_t, int, std::string>;
  static constexpr int64_t kMaxBytes = int64_t{64} << 20;

  static PreparedCache& instance() {
    static PreparedCache cache;
    return cache;
  }

  std::optional<PreparedWeight> find(const Key& key, const at::Tensor& weight) {
    std::lock_guard<std::mutex> guard(lock_);
    for (const Entry& entry : entries_) {
      if (entry.key == key) {
        const bool same = std::memcmp(entry.values.data_ptr(), weight.data_ptr(), weight.nbytes()) == 0;
        if (same) return entry.prepared;
        return std::nullopt;
      }
    }
    return std::nullopt;
  }

  void store(const Key& key, const at::Tensor& weight, const PreparedWeight& prepared) {
    const int64_t bytes = 2 * static_cast<int64_t>(weight.nbytes());  // the copy and about as much prepared
    if (bytes > kMaxBytes / 4) return;
    std::lock_guard<std::mutex> guard(lock_);
    entries_.remove_if([&](const Entry& entry) { return entry.key == key; });
    Entry entry{key, weight.clone(), prepared, bytes};
    if (entry.prepared.weight.defined()) entry.prepared.weight = entry.values;  // not the caller's tensor
    entries_.push_back(std::move(entry));
    int64_t total = 0;
    for (const Entry& entry : entries_) total += entry.bytes;
    while (total > kMaxBytes && !entries_.empty()) {
      total -= entries_.front().bytes;
      entries_.pop_front();
    }
  }

 private:
  struct Entry {
    Key key;
    at::Tensor values;
    PreparedWeight prepared;
    int64_t bytes;
  };
  std::list<Entry> entries_;
  std::mutex lock_;
};

class StepProduct {
 public:
  // weight (N, K); every a will be (batch, K), for `steps` steps.
  // With `own`, the small route is the caller's kernel: timed as such, and when it is chosen its
  // prepared weight is built (prepared()) instead of the transposed one.
  // With `reuse` (calls without gradients, whose weights are usually fixed), what the route prepares
  // is kept for the next call with the same weight values (PreparedCache).
  // `route`: the caller's choice (LoopRoutes), else the product's own timing decides.
  StepProduct(const at::Tensor& weight, int64_t batch, int64_t steps, bool probe_only = false,
              const SmallKernel* own = nullptr, bool reuse = false, std::optional<Route> route = std::nullopt)
      : batch_(batch), n_(weight.size(0)), k_(weight.size(1)), own_(own) {
    if (probe_only) return;
    route_ = route ? available(*route, weight) : choose(weight, steps);
    reuse = reuse && weight.is_contiguous();
    const PreparedCache::Key key{weight.data_ptr(), static_cast<int>(route_), batch, n_, k_,
                                 static_cast<int>(weight.scalar_type()), own_ != nullptr ? own_->name : ""};
    if (reuse) {
      if (const auto kept = PreparedCache::instance().find(key, weight)) {
        prepared_weight_ = *kept;
        return;
      }
    }
    if (route_ == Route::kSmall && own_ != nullptr) {
      prepared_weight_.own = own_->prepare(weight);
    } else if (route_ == Route::kOnednn) {
      prepared_weight_.packed = pack(weight.contiguous(), batch);
    } else if (route_ == Route::kMkl) {
      prepared_weight_.weight = weight.contiguous();
      prepared_weight_.packed = pack_mkl(prepared_weight_.weight, batch);
    } else {
      prepared_weight_.weight_t = weight.t().contiguous();  // (K, N): the layout small_gemm and MKL run fastest on
    }
    if (reuse) PreparedCache::instance().store(key, weight, prepared_weight_);
  }

  Route route() const { return route_; }

  // The small route's weight as the caller's own kernel reads it (only when that route runs it).
  const at::Tensor& prepared() const { return prepared_weight_.own; }

  // The small route's product for rows [begin, end) of a alone: c rows = a rows @ weight^T. Rows
  // are independent, so the loops run whole sequences of a block of rows on one thread each
  // (row_blocks) with no synchronisation between steps.
  template <typename T>
  void apply_rows(const T* a, T* c, int64_t begin, int64_t end) const {
    small_gemm<T>(a + begin * k_, prepared_weight_.weight_t.data_ptr<T>(), c + begin * n_, end - begin, n_, k_);
  }

  // Grain of the row blocks (at::parallel_for): at least 4 rows (small_gemm's tile) per thread.
  static constexpr int64_t kRowGrain = 4;

  // The timed costs at this weight's shape and this batch (timed now if not yet): seconds per product
  // and per call (setup), per route (infinite where a route is not available).
  static RouteCosts costs(const at::Tensor& weight, int64_t batch) {
    return StepProduct(weight, batch, 0, true).measured(weight);
  }

  // a (batch, K) @ weight^T (batch, N), a contiguous: written into c (preallocated, contiguous) and
  // returned, or (oneDNN) returned in a new tensor.
  template <typename T>
  at::Tensor apply(const at::Tensor& a, at::Tensor& c) const {
    const PreparedWeight& w = prepared_weight_;
    if (route_ == Route::kSmall) {
      small_gemm<T>(a.data_ptr<T>(), w.weight_t.data_ptr<T>(), c.data_ptr<T>(), batch_, n_, k_);
    } else if (route_ == Route::kOnednn) {
      return packed_linear(a, *w.packed);
    } else if (route_ == Route::kMkl) {
      return mkl_linear(a, *w.packed, w.weight, batch_);
    } else {
      at::mm_out(c, a, w.weight_t);
    }
    return c;
  }

 private:
  static at::Tensor packed_linear(const at::Tensor& a, const at::Tensor& packed) {
    static const auto linear = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                                   .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                     const std::optional<at::Tensor>&, c10::string_view,
                                                     c10::List<std::optional<at::Scalar>>,
                                                     std::optional<c10::string_view>)>();
    return linear.call(a, packed, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), "");
  }

  static at::Tensor mkl_linear(const at::Tensor& a, const at::Tensor& packed, const at::Tensor& weight,
                               int64_t batch) {
    static const auto linear =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("mkl::_mkl_linear", "")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const std::optional<at::Tensor>&, int64_t)>();
    return linear.call(a, packed, weight, std::nullopt, batch);
  }

  // The weight in MKL's packed-GEMM layout for this batch, or nothing where this torch has no MKL.
  static std::optional<at::Tensor> pack_mkl(const at::Tensor& weight, int64_t batch) {
    if (weight.scalar_type() != at::kFloat || !at::hasMKL()) return std::nullopt;
    const auto schema = c10::Dispatcher::singleton().findSchema({"mkl::_mkl_reorder_linear_weight", ""});
    if (!schema.has_value()) return std::nullopt;
    try {
      return schema->typed<at::Tensor(const at::Tensor&, int64_t)>().call(weight, batch);
    } catch (const c10::Error&) {
      return std::nullopt;
    }
  }

  // The weight in oneDNN's layout for this batch, or nothing where this torch has no such op.
  static std::optional<at::Tensor> pack(const at::Tensor& weight, int64_t batch) {
    if (weight.scalar_type() != at::kFloat || !at::hasMKLDNN()) return std::nullopt;
    const auto schema = c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (!schema.has_value()) return std::nullopt;
    try {
      return schema->typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>().call(weight, batch);
    } catch (const c10::Error&) {  // an oneDNN build without this path: ATen's mm
      return std::nullopt;
    }
  }

  // `route` where it can run (the packed routes need float32 and torch's MKL or oneDNN), else blas.
  Route available(Route route, const at::Tensor& weight) const {
    if (route == Route::kOnednn && !pack(weight.contiguous(), batch_)) return Route::kBlas;
    if (route == Route::kMkl && !pack_mkl(weight.contiguous(), batch_)) return Route::kBlas;
    return route;
  }

 public:
  static std::optional<Route> forced() {
    const char* flag = std::getenv("RNNKIT_STEP_PRODUCT");  // read at every call: tests flip it
    if (flag == nullptr) return std::nullopt;
    const std::string name(flag);
    for (int r = 0; r < kRoutes; ++r) {
      if (name == kRouteNames[r]) return static_cast<Route>(r);
    }
    TORCH_CHECK(name.empty() || name == "auto",
                "RNNKIT_STEP_PRODUCT must be small, blas, onednn, mkl or auto, got '", name, "'");
    return std::nullopt;
  }

 private:
  Route choose(const at::Tensor& weight, int64_t steps) const {
    if (const auto route = forced()) return available(*route, weight);
    const RouteCosts& costs = measured(weight);
    Route best = Route::kBlas;
    double best_total = std::numeric_limits<double>::infinity();
    for (int r = 0; r < kRoutes; ++r) {
      const double total = costs.setup[r] + static_cast<double>(steps) * costs.per_step[r];
      if (total < best_total) best_total = total, best = static_cast<Route>(r);
    }
    return best;
  }

  // The routes' costs at this shape, timed at the first call in this process (later calls read them).
  const RouteCosts& measured(const at::Tensor& weight) const {
    using Key = std::tuple<int, int64_t, int64_t, int64_t, int, std::string>;
    static std::map<Key, RouteCosts> cache;
    static std::mutex lock;
    const Key key{static_cast<int>(weight.scalar_type()), batch_, n_, k_, at::get_num_threads(),
                  own_ != nullptr ? own_->name : ""};
    std::lock_guard<std::mutex> guard(lock);
    const auto found = cache.find(key);
    if (found != cache.end()) return found->second;
    return cache.emplace(key, time_routes(weight)).first->second;
  }

  // Each route's setup and product timed in turns (one warm-up round, then kRounds; the fastest of
  // each kept), so that a slow spell of a shared machine slows every route alike.
  RouteCosts time_routes(const at::Tensor& weight) const {
    constexpr double kNever = std::numeric_limits<double>::infinity();
    constexpr int kRounds = 5;
    RouteCosts costs{{kNever, kNever, kNever, kNever}, {kNever, kNever, kNever, kNever}};
    const at::Tensor a = at::full({batch_, k_}, 0.5, weight.options());  // values do not change the timing
    at::Tensor c = at::empty({batch_, n_}, weight.options());
    at::Tensor weight_t = weight.t().contiguous();
    std::optional<at::Tensor> packed = pack(weight.contiguous(), batch_);
    const at::Tensor weight_c = weight.contiguous();
    std::optional<at::Tensor> packed_mkl = pack_mkl(weight_c, batch_);
    // small_gemm only where it can win; a caller's kernel (more than a product) a little further
    const bool small = batch_ * n_ * k_ <= (own_ != nullptr ? 4 : 1) * kSmallGemmMaxWork;
    at::Tensor prepared = own_ != nullptr && small ? own_->prepare(weight) : at::Tensor();
    auto seconds = [](auto&& fn) {
      const auto start = std::chrono::steady_clock::now();
      fn();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    auto keep = [](double& best, double t, int round) {
      if (round > 0) best = std::min(best, t);
    };
    for (int round = 0; round <= kRounds; ++round) {  // the one-off costs, each into its own buffer
      keep(costs.setup[1], seconds([&] { weight_t = weight.t().contiguous(); }), round);
      if (prepared.defined()) keep(costs.setup[0], seconds([&] { prepared = own_->prepare(weight); }), round);
      if (packed) keep(costs.setup[2], seconds([&] { packed = pack(weight.contiguous(), batch_); }), round);
      if (packed_mkl) {
        keep(costs.setup[3], seconds([&] { packed_mkl = pack_mkl(weight.contiguous(), batch_); }), round);
      }
    }
    for (int round = 0; round <= kRounds; ++round) {  // then the products, in turns
      keep(costs.per_step[1], seconds([&] { at::mm_out(c, a, weight_t); }), round);
      if (prepared.defined()) {  // the caller's kernel, in row blocks as the loops run it
        keep(costs.per_step[0], seconds([&] {
               at::parallel_for(0, batch_, kRowGrain,
                                [&](int64_t begin, int64_t end) { own_->rows(prepared, a, c, begin, end); });
             }),
             round);
      } else if (small) {  // as the loops run it: row blocks on the threads (here with a join per product)
        AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "rnnkit_time_small_gemm", [&] {
          keep(costs.per_step[0], seconds([&] {
                 at::parallel_for(0, batch_, kRowGrain, [&](int64_t begin, int64_t end) {
                   small_gemm<scalar_t>(a.data_ptr<scalar_t>() + begin * k_, weight_t.data_ptr<scalar_t>(),
                                        c.data_ptr<scalar_t>() + begin * n_, end - begin, n_, k_);
                 });
               }),
               round);
        });
      }
      if (packed) keep(costs.per_step[2], seconds([&] { packed_linear(a, *packed); }), round);
      if (packed_mkl) keep(costs.per_step[3], seconds([&] { mkl_linear(a, *packed_mkl, weight_c, batch_); }), round);
    }
    if (!prepared.defined()) costs.setup[0] = costs.setup[1];  // small_gemm: the same transposed copy
    return costs;
  }

  int64_t batch_, n_, k_;
  const SmallKernel* own_ = nullptr;
  Route route_ = Route::kBlas;
  PreparedWeight prepared_weight_;
};

// The route a whole time loop runs fastest with, timed on the loop itself (cuDNN's benchmark mode at
// the level of a loop): the product's own timing (StepProduct::choose) times the product alone, which
// misjudges a route whose loop does more or less around it (the fused LSTM gates compute the
// activations too and run one parallel region per call; the other routes add a pass over the rows
// and two joins per step). Measured on a 2-core Ice Lake, LSTM forward, ms per call (auto by the
// product's timing / small / blas / mkl): T24 B32 H64 0.35 / 0.32 / 0.64 / 0.70; T50 B32 H256 with
// saved activations 11.2 / 11.1 / 9.0 / 11.2; and the product's timing picked differently from one
// process to the next. So at the first call per key, `run(route)` (the caller's loop over the first
// steps of its real inputs, at most kProbeSteps) is timed for each route, and the fastest is kept for
// the process. RNNKIT_STEP_PRODUCT still forces one.
class LoopRoutes {
 public:
  static constexpr int64_t kProbeSteps = 16;
  using Key = std::tuple<std::string, int, int64_t, int64_t, int64_t, int>;  // loop, dtype, B, H, steps, threads

  // The route for the loop `name` at this shape, timed now if not yet. `run(route, steps)` runs the
  // loop over the first `steps` steps with that route.
  template <typename Run>
  static std::optional<Route> pick(const std::string& name, at::ScalarType dtype, int64_t batch, int64_t hidden,
                                   int64_t steps, Run&& run) {
    if (StepProduct::forced()) return std::nullopt;  // the product's own choice honours the flag
    static std::map<Key, Route> cache;
    static std::mutex lock;
    const int64_t probe = std::min(steps, kProbeSteps);
    const Key key{name, static_cast<int>(dtype), batch, hidden, probe, at::get_num_threads()};
    {
      std::lock_guard<std::mutex> guard(lock);
      const auto found = cache.find(key);
      if (found != cache.end()) return found->second;
    }
    constexpr int kRounds = 3;
    double best[kRoutes];
    std::fill(best, best + kRoutes, std::numeric_limits<double>::infinity());
    for (int round = 0; round <= kRounds; ++round) {  // one warm-up round, then the routes in turns
      for (int r = 0; r < kRoutes; ++r) {
        const auto start = std::chrono::steady_clock::now();
        run(static_cast<Route>(r), probe);
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (round > 0) best[r] = std::min(best[r], t);
      }
    }
    const Route fastest = static_cast<Route>(std::min_element(best, best + kRoutes) - best);
    std::lock_guard<std::mutex> guard(lock);
    cache.emplace(key, fastest);
    return fastest;
  }
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
