// SIMD body of the CPU SGD step. Compiled once per CPU_CAPABILITY (DEFAULT, AVX2, AVX512) with
// the matching -m flags; ATen's Vectorized<T> is then 1, 8 or 16 floats wide. Only raw pointers
// cross this file's boundary, so no ATen tensor code is compiled with ISA flags.

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "sgd_cpu_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>

namespace fusedlr::cpu {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

/**
 * Prefetch the lines kPrefetchBytes past param, grad (and buf) + i, for a loop that moves one
 * line of param per iteration. A buffer of a wider type B (float32 momentum for bfloat16 params)
 * moves sizeof(B) / sizeof(T) lines per iteration: each is prefetched.
 */
template <typename T, typename B>
FUSEDLR_INLINE void prefetch_ahead(const T* param, const T* grad, const B* buf, int64_t i) {
  constexpr int64_t ahead = kPrefetchBytes / static_cast<int64_t>(sizeof(T));
  __builtin_prefetch(param + i + ahead, 1);
  __builtin_prefetch(grad + i + ahead, 0);
  if (buf != nullptr) {
    const char* b = reinterpret_cast<const char*>(buf + i + ahead);
    for (size_t line = 0; line < sizeof(B) / sizeof(T); ++line) __builtin_prefetch(b + 64 * line, 1);
  }
}

/** Whether a span of `bytes` per stream prefetches ahead (see kPrefetchBytes, kShortSpanBytes). */
FUSEDLR_INLINE bool prefetch_span(const StepArgs& args, int64_t bytes) {
  return args.prefetch && bytes > kShortSpanBytes;
}

/**
 * A vector of n elements at ptr: a full vector in the main loop (kFull, a plain load the compiler
 * keeps in registers), a partial one for the tail.
 */
template <bool kFull, typename V, typename T>
FUSEDLR_INLINE V load(const T* ptr, int64_t n) {
  if constexpr (kFull) return V::loadu(ptr);
  else return V::loadu(ptr, n);
}
template <bool kFull, typename V, typename T>
FUSEDLR_INLINE void store(const V& v, T* ptr, int64_t n) {
  if constexpr (kFull) v.store(ptr);
  else v.store(ptr, n);
}

/**
 * What a span's loop branches on, decided once per span instead of once per vector. Mode 0 reads
 * every flag at run time. Modes 1-8 are the common step (momentum past its first step; no
 * maximize, LARS ratio, unscale or clip) with nesterov, weight decay and prefetching fixed at
 * compile time, so that the loop holds no branch of its own but the loop test: fewer instructions
 * per element where the kernel, not memory, is the bound (bfloat16 and half on AVX2).
 */
int span_mode(const StepArgs& args, bool first, bool prefetch) {
  const SgdCoeffs<float>& c = args.coeffs_f;  // (coeffs_d has the same flags)
  const bool common = c.has_momentum && !first && !c.maximize && !c.has_ratio && !args.unscale && !args.clip;
  return common ? 1 + int{c.nesterov} + 2 * int{c.has_weight_decay} + 4 * int{prefetch} : 0;
}

/** A span's flags in mode kMode (span_mode): the run-time values in mode 0, constants otherwise. */
template <int kMode>
class SpanFlags {
 public:
  static constexpr bool kFixed = kMode != 0;

  SpanFlags(const StepArgs& args, bool first, bool prefetch)
      : unscale_(args.unscale), clip_(args.clip), first_(first), prefetch_(prefetch) {}

  FUSEDLR_INLINE bool unscale() const { return !kFixed && unscale_; }
  FUSEDLR_INLINE bool clip() const { return !kFixed && clip_; }
  FUSEDLR_INLINE bool first() const { return !kFixed && first_; }
  FUSEDLR_INLINE bool prefetch() const { return kFixed ? ((kMode - 1) & 4) != 0 : prefetch_; }

  /** The coefficients with the mode's flags fixed (the compiler then drops their branches in sgd_update). */
  template <typename V>
  FUSEDLR_INLINE SgdCoeffs<V> coeffs(SgdCoeffs<V> c) const {
    if constexpr (kFixed) {
      c.has_momentum = true;
      c.maximize = false;
      c.has_ratio = false;
      c.nesterov = ((kMode - 1) & 1) != 0;
      c.has_weight_decay = ((kMode - 1) & 2) != 0;
    }
    return c;
  }

 private:
  bool unscale_, clip_, first_, prefetch_;
};

/** fn(std::integral_constant<int, mode>{}): a span function instantiated for its mode. */
template <typename Fn>
FUSEDLR_INLINE void with_span_mode(int mode, const Fn& fn) {
  switch (mode) {
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    case 4: return fn(std::integral_constant<int, 4>{});
    case 5: return fn(std::integral_constant<int, 5>{});
    case 6: return fn(std::integral_constant<int, 6>{});
    case 7: return fn(std::integral_constant<int, 7>{});
    case 8: return fn(std::integral_constant<int, 8>{});
    default: return fn(std::integral_constant<int, 0>{});
  }
}

/** float / double storage: the math type is the storage type. */
template <int kMode, typename T>
void span_same_type(T* param, T* grad, T* buf, int64_t n, const SgdCoeffs<T>& c, const StepArgs& args,
                    bool first_step, bool prefetch_step, double ratio) {
  const SpanFlags<kMode> f(args, first_step, prefetch_step);
  const bool prefetch = f.prefetch(), first = f.first();
  using Vec = Vectorized<T>;
  const SgdCoeffs<Vec> cv = f.coeffs(broadcast<Vec>(c));
  const Vec scale(static_cast<T>(args.grad_scale)), clip(static_cast<T>(args.grad_clip)), r(static_cast<T>(ratio));
  // The tail runs through the same vector code with partial loads and stores, so every
  // element sees exactly the same sequence of roundings. Inlined: a call per vector would spill
  // the coefficients and cost more than the arithmetic.
  auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
    constexpr bool kFull = decltype(full)::value;
    Vec p = load<kFull, Vec>(param + i, count);
    Vec g = load<kFull, Vec>(grad + i, count);
    Vec b = cv.has_momentum ? load<kFull, Vec>(buf + i, count) : Vec(T(0));
    if (f.unscale()) {
      g = g / scale;
      store<kFull>(g, grad + i, count);
    }
    if (f.clip()) g = g * clip;
    sgd_update(p, g, b, cv, first, r);
    store<kFull>(p, param + i, count);
    if (cv.has_momentum) store<kFull>(b, buf + i, count);
  };
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) {
    if (prefetch) prefetch_ahead(param, grad, buf, i);
    body(std::true_type{}, i, Vec::size());
  }
  if (i < n) body(std::false_type{}, i, n - i);
}

/**
 * half storage (and bfloat16 with a float32 buffer): loaded as one reduced-precision vector
 * (F16C), computed as two float vectors. The buffer is stored as T, or as float (B = float: two
 * float vectors, no rounding of the momentum).
 */
template <int kMode, typename T, typename B>
void span_reduced(T* param, T* grad, B* buf, int64_t n, const SgdCoeffs<float>& c, const StepArgs& args,
                  bool first_step, bool prefetch_step, double ratio) {
  static_assert(std::is_same_v<B, T> || std::is_same_v<B, float>, "the buffer is stored as T or as float");
  const SpanFlags<kMode> f(args, first_step, prefetch_step);
  const bool prefetch = f.prefetch(), first = f.first();
  using RVec = Vectorized<T>;
  using FVec = Vectorized<float>;
  const SgdCoeffs<FVec> cv = f.coeffs(broadcast<FVec>(c));
  const FVec scale(static_cast<float>(args.grad_scale)), clip(static_cast<float>(args.grad_clip)),
      r(static_cast<float>(ratio));
  auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
    constexpr bool kFull = decltype(full)::value;
    auto [p0, p1] = at::vec::convert_to_float<T>(load<kFull, RVec>(param + i, count));
    auto [g0, g1] = at::vec::convert_to_float<T>(load<kFull, RVec>(grad + i, count));
    // A float buffer's two vectors: the first `count` elements, split at FVec::size().
    const int64_t lo = std::min<int64_t>(count, FVec::size()), hi = count - lo;
    FVec b0(0.f), b1(0.f);
    if (cv.has_momentum) {
      if constexpr (std::is_same_v<B, float>) {
        b0 = load<kFull, FVec>(buf + i, lo);
        b1 = load<kFull, FVec>(buf + i + FVec::size(), hi);
      } else {
        std::tie(b0, b1) = at::vec::convert_to_float<T>(load<kFull, RVec>(buf + i, count));
      }
    }
    if (f.unscale()) {
      g0 = g0 / scale;
      g1 = g1 / scale;
      store<kFull>(at::vec::convert_from_float<T>(g0, g1), grad + i, count);
    }
    if (f.clip()) g0 = g0 * clip, g1 = g1 * clip;
    sgd_update(p0, g0, b0, cv, first, r);
    sgd_update(p1, g1, b1, cv, first, r);
    store<kFull>(at::vec::convert_from_float<T>(p0, p1), param + i, count);
    if (cv.has_momentum) {
      if constexpr (std::is_same_v<B, float>) {
        store<kFull>(b0, buf + i, lo);
        store<kFull>(b1, buf + i + FVec::size(), hi);
      } else {
        store<kFull>(at::vec::convert_from_float<T>(b0, b1), buf + i, count);
      }
    }
  };
  int64_t i = 0;
  for (; i + RVec::size() <= n; i += RVec::size()) {
    if (prefetch) prefetch_ahead(param, grad, buf, i);
    body(std::true_type{}, i, RVec::size());
  }
  if (i < n) body(std::false_type{}, i, n - i);
}

/**
 * bfloat16 storage, computed in float, without widening or permutes: a vector of int32 words
 * holds two bfloat16 each, the even element in the low half-word. As floats, the even elements
 * are word << 16 and the odd ones word & 0xffff0000; back, each float rounds to nearest even as
 * c10::BFloat16 does (NaN becomes 0xffff, as in ATen's vectorised conversion) and the halves are
 * or-ed into one word. The update is elementwise, so which element sits in which lane is free.
 */
template <int kMode>
void span_bf16(c10::BFloat16* param, c10::BFloat16* grad, c10::BFloat16* buf, int64_t n, const SgdCoeffs<float>& c,
               const StepArgs& args, bool first_step, bool prefetch_step, double ratio) {
  const SpanFlags<kMode> f(args, first_step, prefetch_step);
  const bool prefetch = f.prefetch(), first = f.first();
  using IVec = Vectorized<int32_t>;
  using FVec = Vectorized<float>;
  constexpr int64_t kStep = 2 * IVec::size();  // bfloat16 elements per vector of words
  const SgdCoeffs<FVec> cv = f.coeffs(broadcast<FVec>(c));
  const FVec scale(static_cast<float>(args.grad_scale)), clip(static_cast<float>(args.grad_clip)),
      r(static_cast<float>(ratio));
  const IVec sixteen(16), high(static_cast<int32_t>(0xffff0000u)), low(0xffff), one(1), bias(0x7fff);
  auto rounded = [&](const FVec& x) __attribute__((always_inline)) {
    const IVec u = at::vec::cast<int32_t>(x);
    const IVec r = u + (((u >> sixteen) & one) + bias);  // c10::BFloat16's round to nearest even
    return r | at::vec::cast<int32_t>(x.isnan());          // NaN: all ones (0xffff once halved)
  };
  auto join = [&](const FVec& even, const FVec& odd) __attribute__((always_inline)) {
    return ((rounded(even) >> sixteen) & low) | (rounded(odd) & high);
  };
  // Words of a partial vector: the first `count` bfloat16 of ptr (zeros after them), through
  // ATen's partial load and store of bfloat16 vectors (masked on AVX-512), which are IVec's bytes.
  using BVec = Vectorized<c10::BFloat16>;
  static_assert(sizeof(BVec) == sizeof(IVec) && BVec::size() == kStep, "a bfloat16 vector is a vector of words");
  auto load_words = [&](auto full, const c10::BFloat16* ptr, int64_t count) __attribute__((always_inline)) {
    if constexpr (decltype(full)::value) {
      return IVec::loadu(ptr);
    } else {
      const BVec v = BVec::loadu(ptr, count);
      IVec w;
      std::memcpy(&w, &v, sizeof w);
      return w;
    }
  };
  auto store_words = [&](auto full, const IVec& w, c10::BFloat16* ptr, int64_t count) __attribute__((always_inline)) {
    if constexpr (decltype(full)::value) {
      w.store(ptr);
    } else {
      BVec v;
      std::memcpy(&v, &w, sizeof v);
      v.store(ptr, count);
    }
  };
  // The tail runs through the same code as the full vectors: every element sees the same roundings.
  auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
    const IVec pw = load_words(full, param + i, count), gw = load_words(full, grad + i, count);
    FVec p0 = at::vec::cast<float>(pw << sixteen), p1 = at::vec::cast<float>(pw & high);
    FVec g0 = at::vec::cast<float>(gw << sixteen), g1 = at::vec::cast<float>(gw & high);
    FVec b0(0.f), b1(0.f);
    if (cv.has_momentum) {
      const IVec bw = load_words(full, buf + i, count);
      b0 = at::vec::cast<float>(bw << sixteen);
      b1 = at::vec::cast<float>(bw & high);
    }
    if (f.unscale()) {
      g0 = g0 / scale;
      g1 = g1 / scale;
      store_words(full, join(g0, g1), grad + i, count);
    }
    if (f.clip()) g0 = g0 * clip, g1 = g1 * clip;
    sgd_update(p0, g0, b0, cv, first, r);
    sgd_update(p1, g1, b1, cv, first, r);
    store_words(full, join(p0, p1), param + i, count);
    if (cv.has_momentum) store_words(full, join(b0, b1), buf + i, count);
  };
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    if (prefetch) prefetch_ahead(param, grad, buf, i);
    body(std::true_type{}, i, kStep);
  }
  if (i < n) body(std::false_type{}, i, n - i);
}

/**
 * The norm terms of n elements of x summed (or their max), in double, one element at a time in
 * kLanes independent accumulators joined in a fixed order at the end: double storage, a general
 * p (a pow per element) and the tails of the vector paths below.
 */
template <typename T>
double norm_span_scalar(const T* x, int64_t n, NormKind kind, double p) {
  constexpr int kLanes = 16;
  double acc[kLanes] = {};
  // (half types through float, their exact value; double as it is)
  auto at = [x](int64_t i) __attribute__((always_inline)) {
    if constexpr (std::is_same_v<T, double>) return x[i];
    else return static_cast<double>(static_cast<float>(x[i]));
  };
  auto run = [&](auto term, auto join) __attribute__((always_inline)) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] = join(acc[j], term(at(i + j)));
    for (int j = 0; i < n; ++i, ++j) acc[j] = join(acc[j], term(at(i)));
  };
  auto sum = [](double a, double b) { return a + b; };
  auto max = [](double a, double b) { return (b > a || b != b) ? b : a; };  // NaN wins, as in norm_join
  switch (kind) {
    case NormKind::kTwo: run([](double v) { return v * v; }, sum); break;
    case NormKind::kOne: run([](double v) { return std::fabs(v); }, sum); break;
    case NormKind::kInf: run([](double v) { return std::fabs(v); }, max); break;
    default: run([p](double v) { return std::pow(std::fabs(v), p); }, sum); break;
  }
  double total = acc[0];
  for (int j = 1; j < kLanes; ++j) total = norm_join(total, acc[j], kind);
  return total;
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
/**
 * Float vectors widened to double and accumulated (x^2 by fma, |x| summed, or max |x| with NaN
 * tracked apart): the norm of float, half and bfloat16 storage at memory speed, exactly as the
 * scalar path's terms (every float is a double; only the order of the additions differs).
 */
struct DoubleNormAcc {
#if defined(CPU_CAPABILITY_AVX512)
  using D = __m512d;
  static D zero() { return _mm512_setzero_pd(); }
  static void widen(const Vectorized<float>& x, D& lo, D& hi) {
    const __m512 v = x;
    lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
  }
  static D fma(D a, D b, D c) { return _mm512_fmadd_pd(a, b, c); }
  static D add(D a, D b) { return _mm512_add_pd(a, b); }
  static D abs(D a) { return _mm512_abs_pd(a); }
  static D max(D a, D b) { return _mm512_max_pd(a, b); }
  static bool unordered(D a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q) != 0; }
  static void store(double* out, D a) { _mm512_storeu_pd(out, a); }
#else
  using D = __m256d;
  static D zero() { return _mm256_setzero_pd(); }
  static void widen(const Vectorized<float>& x, D& lo, D& hi) {
    const __m256 v = x;
    lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  }
  static D fma(D a, D b, D c) { return _mm256_fmadd_pd(a, b, c); }
  static D add(D a, D b) { return _mm256_add_pd(a, b); }
  static D abs(D a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static D max(D a, D b) { return _mm256_max_pd(a, b); }
  static bool unordered(D a) { return _mm256_movemask_pd(_mm256_cmp_pd(a, a, _CMP_UNORD_Q)) != 0; }
  static void store(double* out, D a) { _mm256_storeu_pd(out, a); }
#endif
  static constexpr int kWidth = sizeof(D) / sizeof(double);
  D a0 = zero(), a1 = zero();
  bool nan = false;

  FUSEDLR_INLINE void add(const Vectorized<float>& x, NormKind kind) {
    D lo, hi;
    widen(x, lo, hi);
    if (kind == NormKind::kTwo) {
      a0 = fma(lo, lo, a0);
      a1 = fma(hi, hi, a1);
    } else if (kind == NormKind::kOne) {
      a0 = add(a0, abs(lo));
      a1 = add(a1, abs(hi));
    } else {
      nan = nan || unordered(lo) || unordered(hi);
      a0 = max(a0, abs(lo));
      a1 = max(a1, abs(hi));
    }
  }
  double total(NormKind kind) const {
    double lanes[2 * kWidth];
    store(lanes, a0);
    store(lanes + kWidth, a1);
    double t = lanes[0];
    for (int j = 1; j < 2 * kWidth; ++j) t = norm_join(t, lanes[j], kind);
    return nan ? std::numeric_limits<double>::quiet_NaN() : t;
  }
};

template <typename T>
double norm_span_of(const T* x, int64_t n, NormKind kind, double p) {
  if constexpr (std::is_same_v<T, double>) {
    return norm_span_scalar(x, n, kind, p);
  } else {
    if (kind == NormKind::kP) return norm_span_scalar(x, n, kind, p);
    DoubleNormAcc acc;
    int64_t i = 0;
    // A read-only stream leaves memory idle between the hardware prefetcher's requests: prefetch
    // ahead (kNormPrefetchBytes).
    constexpr int64_t ahead = kNormPrefetchBytes / static_cast<int64_t>(sizeof(T));
    if constexpr (std::is_same_v<T, float>) {
      using FVec = Vectorized<float>;
      for (; i + FVec::size() <= n; i += FVec::size()) {
        __builtin_prefetch(x + i + ahead, 0, 1);
        acc.add(FVec::loadu(x + i), kind);
      }
    } else {
      using RVec = Vectorized<T>;
      for (; i + RVec::size() <= n; i += RVec::size()) {
        __builtin_prefetch(x + i + ahead, 0, 1);
        const auto [f0, f1] = at::vec::convert_to_float<T>(RVec::loadu(x + i));
        acc.add(f0, kind);
        acc.add(f1, kind);
      }
    }
    return norm_join(acc.total(kind), norm_span_scalar(x + i, n - i, kind, p), kind);
  }
}

/** Sums of squares of two arrays of n elements in one loop: two streams in flight per core. */
template <typename T>
void sum_squares2_of(const T* x, const T* y, int64_t n, double& sx, double& sy) {
  if constexpr (std::is_same_v<T, double>) {
    sx = norm_span_scalar(x, n, NormKind::kTwo, 2.0);
    sy = norm_span_scalar(y, n, NormKind::kTwo, 2.0);
  } else {
    DoubleNormAcc ax, ay;
    int64_t i = 0;
    constexpr int64_t ahead = kNormPrefetchBytes / static_cast<int64_t>(sizeof(T));
    if constexpr (std::is_same_v<T, float>) {
      using FVec = Vectorized<float>;
      for (; i + FVec::size() <= n; i += FVec::size()) {
        __builtin_prefetch(x + i + ahead, 0, 1);
        __builtin_prefetch(y + i + ahead, 0, 1);
        ax.add(FVec::loadu(x + i), NormKind::kTwo);
        ay.add(FVec::loadu(y + i), NormKind::kTwo);
      }
    } else {
      using RVec = Vectorized<T>;
      for (; i + RVec::size() <= n; i += RVec::size()) {
        __builtin_prefetch(x + i + ahead, 0, 1);
        __builtin_prefetch(y + i + ahead, 0, 1);
        const auto [x0, x1] = at::vec::convert_to_float<T>(RVec::loadu(x + i));
        const auto [y0, y1] = at::vec::convert_to_float<T>(RVec::loadu(y + i));
        ax.add(x0, NormKind::kTwo);
        ax.add(x1, NormKind::kTwo);
        ay.add(y0, NormKind::kTwo);
        ay.add(y1, NormKind::kTwo);
      }
    }
    sx = ax.total(NormKind::kTwo) + norm_span_scalar(x + i, n - i, NormKind::kTwo, 2.0);
    sy = ay.total(NormKind::kTwo) + norm_span_scalar(y + i, n - i, NormKind::kTwo, 2.0);
  }
}
#else
template <typename T>
double norm_span_of(const T* x, int64_t n, NormKind kind, double p) {
  return norm_span_scalar(x, n, kind, p);
}

template <typename T>
void sum_squares2_of(const T* x, const T* y, int64_t n, double& sx, double& sy) {
  sx = norm_span_scalar(x, n, NormKind::kTwo, 2.0);
  sy = norm_span_scalar(y, n, NormKind::kTwo, 2.0);
}
#endif

/** Broadcast schedule-free coefficients into math type M (float for the half types) as vectors. */
template <typename V, typename M>
SfCoeffs<V> sf_broadcast(const SfCoeffs<double>& k) {
  return SfCoeffs<V>{V(static_cast<M>(k.c)), V(static_cast<M>(k.y_coef)), V(static_cast<M>(k.neg_lr)),
                     V(static_cast<M>(k.weight_decay)), k.has_weight_decay};
}

/** The schedule-free step over n elements of one tensor (float/double storage; tails as partial vectors). */
template <typename T>
void sf_span_same_type(T* y, const T* g, T* z, int64_t n, const SfCoeffs<double>& k) {
  using Vec = Vectorized<T>;
  const SfCoeffs<Vec> kv = sf_broadcast<Vec, T>(k);
  const bool small = std::fabs(k.c) < 0.5;
  auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
    constexpr bool kFull = decltype(full)::value;
    Vec yv = load<kFull, Vec>(y + i, count), zv = load<kFull, Vec>(z + i, count);
    sf_update(yv, load<kFull, Vec>(g + i, count), zv, kv, small);
    store<kFull>(yv, y + i, count);
    store<kFull>(zv, z + i, count);
  };
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) body(std::true_type{}, i, Vec::size());
  if (i < n) body(std::false_type{}, i, n - i);
}

/** The same for half and bfloat16 storage: computed in float, rounded once. */
template <typename T>
void sf_span_reduced(T* y, const T* g, T* z, int64_t n, const SfCoeffs<double>& k) {
  using RVec = Vectorized<T>;
  using FVec = Vectorized<float>;
  const SfCoeffs<FVec> kv = sf_broadcast<FVec, float>(k);
  const bool small = std::fabs(k.c) < 0.5;
  auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
    constexpr bool kFull = decltype(full)::value;
    auto [y0, y1] = at::vec::convert_to_float<T>(load<kFull, RVec>(y + i, count));
    auto [g0, g1] = at::vec::convert_to_float<T>(load<kFull, RVec>(g + i, count));
    auto [z0, z1] = at::vec::convert_to_float<T>(load<kFull, RVec>(z + i, count));
    sf_update(y0, g0, z0, kv, small);
    sf_update(y1, g1, z1, kv, small);
    store<kFull>(at::vec::convert_from_float<T>(y0, y1), y + i, count);
    store<kFull>(at::vec::convert_from_float<T>(z0, z1), z + i, count);
  };
  int64_t i = 0;
  for (; i + RVec::size() <= n; i += RVec::size()) body(std::true_type{}, i, RVec::size());
  if (i < n) body(std::false_type{}, i, n - i);
}

/** y = lerp(y, z, w) over n elements (torch's lerp; the half types through float). */
template <typename T>
void lerp_span_of(T* y, const T* z, int64_t n, double w) {
  const bool small = std::fabs(w) < 0.5;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    using Vec = Vectorized<T>;
    const Vec wv(static_cast<T>(w));
    auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
      constexpr bool kFull = decltype(full)::value;
      store<kFull>(lerp_torch(load<kFull, Vec>(y + i, count), load<kFull, Vec>(z + i, count), wv, small), y + i,
                   count);
    };
    int64_t i = 0;
    for (; i + Vec::size() <= n; i += Vec::size()) body(std::true_type{}, i, Vec::size());
    if (i < n) body(std::false_type{}, i, n - i);
  } else {
    using RVec = Vectorized<T>;
    using FVec = Vectorized<float>;
    const FVec wv(static_cast<float>(w));
    auto body = [&](auto full, int64_t i, int64_t count) __attribute__((always_inline)) {
      constexpr bool kFull = decltype(full)::value;
      auto [y0, y1] = at::vec::convert_to_float<T>(load<kFull, RVec>(y + i, count));
      auto [z0, z1] = at::vec::convert_to_float<T>(load<kFull, RVec>(z + i, count));
      store<kFull>(at::vec::convert_from_float<T>(lerp_torch(y0, z0, wv, small), lerp_torch(y1, z1, wv, small)),
                   y + i, count);
    };
    int64_t i = 0;
    for (; i + RVec::size() <= n; i += RVec::size()) body(std::true_type{}, i, RVec::size());
    if (i < n) body(std::false_type{}, i, n - i);
  }
}

}  // namespace

void sf_span(c10::ScalarType dtype, void* y, const void* g, void* z, int64_t n, const SfCoeffs<double>& k) {
  switch (dtype) {
    case c10::ScalarType::Float:
      return sf_span_same_type(static_cast<float*>(y), static_cast<const float*>(g), static_cast<float*>(z), n, k);
    case c10::ScalarType::Double:
      return sf_span_same_type(static_cast<double*>(y), static_cast<const double*>(g), static_cast<double*>(z), n, k);
    case c10::ScalarType::BFloat16:
      return sf_span_reduced(static_cast<c10::BFloat16*>(y), static_cast<const c10::BFloat16*>(g),
                             static_cast<c10::BFloat16*>(z), n, k);
    case c10::ScalarType::Half:
      return sf_span_reduced(static_cast<c10::Half*>(y), static_cast<const c10::Half*>(g), static_cast<c10::Half*>(z),
                             n, k);
    default:
      return;
  }
}

void lerp_span(c10::ScalarType dtype, void* y, const void* z, int64_t n, double w) {
  switch (dtype) {
    case c10::ScalarType::Float: return lerp_span_of(static_cast<float*>(y), static_cast<const float*>(z), n, w);
    case c10::ScalarType::Double: return lerp_span_of(static_cast<double*>(y), static_cast<const double*>(z), n, w);
    case c10::ScalarType::BFloat16:
      return lerp_span_of(static_cast<c10::BFloat16*>(y), static_cast<const c10::BFloat16*>(z), n, w);
    case c10::ScalarType::Half:
      return lerp_span_of(static_cast<c10::Half*>(y), static_cast<const c10::Half*>(z), n, w);
    default:
      return;
  }
}

double norm_span(c10::ScalarType dtype, const void* x, int64_t n, NormKind kind, double p) {
  switch (dtype) {
    case c10::ScalarType::Float: return norm_span_of(static_cast<const float*>(x), n, kind, p);
    case c10::ScalarType::Double: return norm_span_of(static_cast<const double*>(x), n, kind, p);
    case c10::ScalarType::BFloat16: return norm_span_of(static_cast<const c10::BFloat16*>(x), n, kind, p);
    case c10::ScalarType::Half: return norm_span_of(static_cast<const c10::Half*>(x), n, kind, p);
    default: return 0.0;  // (the op's check admits only the four dtypes above)
  }
}

void sum_squares2(c10::ScalarType dtype, const void* x, const void* y, int64_t n, double& sx, double& sy) {
  switch (dtype) {
    case c10::ScalarType::Float:
      return sum_squares2_of(static_cast<const float*>(x), static_cast<const float*>(y), n, sx, sy);
    case c10::ScalarType::Double:
      return sum_squares2_of(static_cast<const double*>(x), static_cast<const double*>(y), n, sx, sy);
    case c10::ScalarType::BFloat16:
      return sum_squares2_of(static_cast<const c10::BFloat16*>(x), static_cast<const c10::BFloat16*>(y), n, sx, sy);
    case c10::ScalarType::Half:
      return sum_squares2_of(static_cast<const c10::Half*>(x), static_cast<const c10::Half*>(y), n, sx, sy);
    default:
      sx = sy = 0.0;
  }
}

void sgd_span(c10::ScalarType dtype, void* param, void* grad, void* buf, c10::ScalarType buf_dtype, int64_t n,
              const StepArgs& args, bool first, double ratio) {
  const bool float_buf = buf != nullptr && buf_dtype == c10::ScalarType::Float && dtype != c10::ScalarType::Float;
  const bool prefetch = prefetch_span(args, n * static_cast<int64_t>(c10::elementSize(dtype)));
  with_span_mode(span_mode(args, first, prefetch), [&](auto m) {
    constexpr int kMode = decltype(m)::value;
    switch (dtype) {
      case c10::ScalarType::Float:
        return span_same_type<kMode>(static_cast<float*>(param), static_cast<float*>(grad), static_cast<float*>(buf),
                                     n, args.coeffs_f, args, first, prefetch, ratio);
      case c10::ScalarType::Double:
        return span_same_type<kMode>(static_cast<double*>(param), static_cast<double*>(grad),
                                     static_cast<double*>(buf), n, args.coeffs_d, args, first, prefetch, ratio);
      case c10::ScalarType::BFloat16:
        if (float_buf)
          return span_reduced<kMode>(static_cast<c10::BFloat16*>(param), static_cast<c10::BFloat16*>(grad),
                                     static_cast<float*>(buf), n, args.coeffs_f, args, first, prefetch, ratio);
        return span_bf16<kMode>(static_cast<c10::BFloat16*>(param), static_cast<c10::BFloat16*>(grad),
                                static_cast<c10::BFloat16*>(buf), n, args.coeffs_f, args, first, prefetch, ratio);
      case c10::ScalarType::Half:
        if (float_buf)
          return span_reduced<kMode>(static_cast<c10::Half*>(param), static_cast<c10::Half*>(grad),
                                     static_cast<float*>(buf), n, args.coeffs_f, args, first, prefetch, ratio);
        return span_reduced<kMode>(static_cast<c10::Half*>(param), static_cast<c10::Half*>(grad),
                                   static_cast<c10::Half*>(buf), n, args.coeffs_f, args, first, prefetch, ratio);
      default:
        // The op boundary (sgd_check.cpp) admits only the four dtypes above.
        return;
    }
  });
}

void stream_span(float* p, const float* g, float* b, int64_t n) {
  using Vec = Vectorized<float>;
  int64_t i = 0;
  if (b != nullptr) {
    for (; i + Vec::size() <= n; i += Vec::size()) {
      const Vec gv = Vec::loadu(g + i);
      (Vec::loadu(p + i) + gv).store(p + i);
      (Vec::loadu(b + i) + gv).store(b + i);
    }
    for (; i < n; ++i) p[i] += g[i], b[i] += g[i];
  } else {
    for (; i + Vec::size() <= n; i += Vec::size()) (Vec::loadu(p + i) + Vec::loadu(g + i)).store(p + i);
    for (; i < n; ++i) p[i] += g[i];
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlr::cpu
