#include "quant/abs_histogram.h"

#include <algorithm>
#include <cmath>

#include "quant/channel_layout.h"
#include "quant/range_stats.h"

namespace qslim::quant {

namespace {

// Interleaved partial histograms: consecutive elements increment different copies, so a run of
// equal bins (the zeros of a post-ReLU tensor) does not serialise on one counter. Sign-split
// histograms are twice as wide, so they keep fewer copies (all copies of a chunk stay in L1).
template <bool Split>
constexpr int kCopies = Split ? 2 : 4;
constexpr int kLanes = 16;
constexpr int64_t kBlock = 512;  // a multiple of kLanes
// A chunk's uint32 counters must not overflow.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

// Counts x[0, n) into hist (kCopies copies of `stride` counters) and returns max|x| of the chunk
// (NaN skipped). Values above the range land in the last bin: the caller re-bins the batch when
// the returned max exceeds the range. Slot `junk` (the last of each copy) collects NaNs and the slot
// before it exact zeros (merged into bin 0, and counted apart for zeros()). The index
// pass is branch-free and vectorises; the increments cannot.
template <typename T, bool Split>
T bin_chunk(const T* __restrict x, int64_t n, T inv, int32_t bins, uint32_t* __restrict hist, int64_t stride) {
  constexpr int copies = kCopies<Split>;
  alignas(64) int32_t idx[kBlock];
  T mx[kLanes] = {};
  const T last = static_cast<T>(bins - 1);
  const int32_t junk = static_cast<int32_t>(stride - 1), zero = static_cast<int32_t>(stride - 2);
  auto index = [&](T v, T& m) {
    const T a = std::fabs(v);
    m = a > m ? a : m;
    T t = a * inv;
    t = t < last ? t : last;  // also maps NaN to `last` before the conversion (no UB)
    int32_t k = static_cast<int32_t>(t);
    if constexpr (Split) k += v < T(0) ? bins : 0;
    return a == a ? (a == T(0) ? zero : k) : junk;
  };
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    const T* p = x + b;
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes)
      for (int j = 0; j < kLanes; ++j) idx[i + j] = index(p[i + j], mx[j]);
    for (; i < len; ++i) idx[i] = index(p[i], mx[0]);
    i = 0;
    for (; i + copies <= len; i += copies)
      for (int c = 0; c < copies; ++c) ++hist[c * stride + idx[i + c]];
    for (; i < len; ++i) ++hist[idx[i]];
  }
  T m = 0;
  for (int j = 0; j < kLanes; ++j) m = mx[j] > m ? mx[j] : m;
  return m;
}

// Spreads counts over [0, old_range] onto bins over [0, new_range] (new_range > old_range),
// proportionally to the overlap of each old bin with the new ones.
void rebin(std::vector<double>& v, double ratio) {
  const int64_t bins = static_cast<int64_t>(v.size());
  std::vector<double> out(v.size(), 0.0);
  for (int64_t j = 0; j < bins; ++j) {
    const double c = v[j];
    if (c == 0) continue;
    const double a = static_cast<double>(j) * ratio, b = static_cast<double>(j + 1) * ratio;
    const int64_t k = std::min<int64_t>(static_cast<int64_t>(a), bins - 1);
    const double edge = static_cast<double>(k + 1);
    if (b <= edge || k == bins - 1) {
      out[k] += c;
    } else {
      const double f = (edge - a) / ratio;
      out[k] += c * f;
      out[k + 1] += c * (1.0 - f);
    }
  }
  v.swap(out);
}

}  // namespace

AbsHistogram::AbsHistogram(int64_t bins, bool split_sign, std::string who)
    : bins_(bins), split_(split_sign), who_(std::move(who)) {
  QSLIM_CHECK(bins >= 1 && bins <= (int64_t{1} << 24), who_, ": histogram bins must be in 1..16777216, got ", bins);
  clear();
}

void AbsHistogram::clear() {
  range_ = 0;
  count_ = 0;
  zeros_ = 0;
  pos_.assign(bins_, 0.0);
  if (split_) neg_.assign(bins_, 0.0);
}

std::vector<double> AbsHistogram::abs_counts() const {
  std::vector<double> a = pos_;
  if (split_)
    for (int64_t i = 0; i < bins_; ++i) a[i] += neg_[i];
  return a;
}

double AbsHistogram::total() const { return static_cast<double>(count_); }

void AbsHistogram::grow(double new_range) {
  // While the range was 0 every value was 0: they stay in bin 0 of the new range.
  if (range_ > 0) {
    const double ratio = range_ / new_range;
    rebin(pos_, ratio);
    if (split_) rebin(neg_, ratio);
  }
  range_ = new_range;
}

void AbsHistogram::add(const Tensor& x) {
  QSLIM_CHECK(x.defined(), who_, ": input is undefined");
  QSLIM_CHECK(x.is_floating_point(), who_, ": expected an f32 or f64 tensor, got ", dtype_name(x.dtype()), " ",
              shape_str(x.shape()));
  if (x.numel() == 0) return;
  const Tensor xc = x.detach().contiguous();
  auto check_finite = [&](double m) {
    QSLIM_CHECK(std::isfinite(m), who_, ": input ", shape_str(x.shape()),
                " holds an infinite value; calibration data must be finite");
  };
  // Until the range is known, find it first; afterwards bin optimistically with the current range
  // (one pass) and redo the batch only when it widened the range.
  if (range_ == 0) {
    const double m = abs_max(xc);
    check_finite(m);
    if (m > 0) grow(m);
  }
  double m = bin_counts(xc);
  if (m > range_) {
    check_finite(m);
    grow(m);
    m = bin_counts(xc);
  }
  int64_t nans = 0;
  const int64_t stride = (split_ ? 2 * bins_ : bins_) + 2;
  for (size_t c = 0; c < scratch_.size() / stride; ++c) {
    const uint32_t* h = scratch_.data() + c * stride;
    for (int64_t j = 0; j < bins_; ++j) pos_[j] += h[j];
    if (split_)
      for (int64_t j = 0; j < bins_; ++j) neg_[j] += h[bins_ + j];
    pos_[0] += h[stride - 2];
    zeros_ += h[stride - 2];
    nans += h[stride - 1];
  }
  count_ += xc.numel() - nans;
}

double AbsHistogram::bin_counts(const Tensor& xc) {
  const int64_t n = xc.numel();
  const int64_t stride = (split_ ? 2 * bins_ : bins_) + 2;
  const int64_t chunks = std::max(detail::reduction_chunks(n), (n + kMaxChunk - 1) / kMaxChunk);
  const int64_t per_chunk = (split_ ? kCopies<true> : kCopies<false>) * stride;
  scratch_.assign(static_cast<size_t>(chunks * per_chunk), 0u);
  std::vector<double> maxes(chunks, 0.0);
  const int32_t bins = static_cast<int32_t>(bins_);
  QSLIM_DISPATCH_FLOAT(xc.dtype(), "AbsHistogram::add", [&] {
    const scalar_t* p = xc.data<scalar_t>();
    // range 0: every value is 0 and lands in bin 0.
    const scalar_t inv = range_ > 0 ? static_cast<scalar_t>(static_cast<double>(bins_) / range_) : scalar_t(0);
    detail::for_each_chunk(n, chunks, [&](int64_t c, int64_t b, int64_t e) {
      uint32_t* h = scratch_.data() + c * per_chunk;
      maxes[c] = split_ ? bin_chunk<scalar_t, true>(p + b, e - b, inv, bins, h, stride)
                        : bin_chunk<scalar_t, false>(p + b, e - b, inv, bins, h, stride);
    });
  });
  double m = 0;
  for (double v : maxes) m = std::max(m, v);
  return m;
}

}  // namespace qslim::quant
