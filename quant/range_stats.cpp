#include "quant/range_stats.h"

#include <cmath>
#include <limits>

#include "quant/channel_layout.h"

namespace qslim::quant {

namespace {

using detail::ChannelLayout;

constexpr int kLanes = 16;

void check_input(const Tensor& x, int64_t axis, const char* op) {
  QSLIM_CHECK(x.defined(), op, ": input is undefined");
  QSLIM_CHECK(x.is_floating_point(), op, ": expected an f32 or f64 tensor, got ", dtype_name(x.dtype()));
  QSLIM_CHECK(axis == -1 || (axis >= 0 && axis < x.dim()), op, ": axis must be -1 or in [0, ", x.dim(), ") for input ",
              shape_str(x.shape()), ", got ", axis);
}

template <typename T>
T run_abs_max(const T* __restrict x, int64_t n) {
  T m[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const T a = std::fabs(x[i + j]);
      m[j] = a > m[j] ? a : m[j];
    }
  for (; i < n; ++i) {
    const T a = std::fabs(x[i]);
    m[0] = a > m[0] ? a : m[0];
  }
  T r = 0;
  for (int j = 0; j < kLanes; ++j) r = m[j] > r ? m[j] : r;
  return r;
}

template <typename T>
std::vector<double> abs_max_impl(const Tensor& xc, int64_t axis) {
  const ChannelLayout l = detail::channel_layout(xc.shape(), axis);
  const int64_t channels = axis < 0 ? 1 : xc.size(axis);
  const int64_t n = l.numel();
  const int64_t chunks = detail::reduction_chunks(n);
  std::vector<double> part(chunks * channels, 0.0);
  const T* x = xc.data<T>();
  detail::for_each_chunk(n, chunks, [&](int64_t chunk, int64_t b, int64_t e) {
    double* pm = part.data() + chunk * channels;
    detail::for_each_run(
        l, b, e, [&](int64_t i, int64_t len, int64_t c) { pm[c] = std::max<double>(pm[c], run_abs_max(x + i, len)); },
        [&](int64_t i, int64_t len, int64_t c0) {
          for (int64_t k = 0; k < len; ++k) {
            const double a = std::fabs(static_cast<double>(x[i + k]));
            pm[c0 + k] = a > pm[c0 + k] ? a : pm[c0 + k];
          }
        });
  });
  std::vector<double> out(channels, 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t c = 0; c < channels; ++c) out[c] = std::max(out[c], part[chunk * channels + c]);
  return out;
}

template <typename T>
std::pair<double, double> min_max_run(const T* __restrict x, int64_t n) {
  T lo[kLanes], hi[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = std::numeric_limits<T>::infinity();
    hi[j] = -std::numeric_limits<T>::infinity();
  }
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const T v = x[i + j];
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = v > hi[j] ? v : hi[j];
    }
  for (; i < n; ++i) {
    lo[0] = x[i] < lo[0] ? x[i] : lo[0];
    hi[0] = x[i] > hi[0] ? x[i] : hi[0];
  }
  double mn = lo[0], mx = hi[0];
  for (int j = 1; j < kLanes; ++j) {
    mn = std::min<double>(mn, lo[j]);
    mx = std::max<double>(mx, hi[j]);
  }
  return {mn, mx};
}

}  // namespace

double abs_max(const Tensor& x) {
  check_input(x, -1, "abs_max");
  if (x.numel() == 0) return 0.0;
  Tensor xc = x.contiguous();
  double r = 0;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "abs_max", [&] { r = abs_max_impl<scalar_t>(xc, -1)[0]; });
  return r;
}

std::vector<double> abs_max_per_channel(const Tensor& x, int64_t axis) {
  check_input(x, axis, "abs_max_per_channel");
  QSLIM_CHECK(axis >= 0, "abs_max_per_channel: axis must be >= 0, got ", axis);
  Tensor xc = x.contiguous();
  std::vector<double> r;
  QSLIM_DISPATCH_FLOAT(x.dtype(), "abs_max_per_channel", [&] { r = abs_max_impl<scalar_t>(xc, axis); });
  return r;
}

std::pair<double, double> min_max(const Tensor& x) {
  check_input(x, -1, "min_max");
  QSLIM_CHECK(x.numel() > 0, "min_max: empty input ", shape_str(x.shape()));
  Tensor xc = x.contiguous();
  const int64_t n = xc.numel();
  const int64_t chunks = detail::reduction_chunks(n);
  std::vector<std::pair<double, double>> part(chunks);
  QSLIM_DISPATCH_FLOAT(x.dtype(), "min_max", [&] {
    const scalar_t* p = xc.data<scalar_t>();
    detail::for_each_chunk(n, chunks, [&](int64_t c, int64_t b, int64_t e) { part[c] = min_max_run(p + b, e - b); });
  });
  std::pair<double, double> r = part[0];
  for (const auto& [mn, mx] : part) {
    r.first = std::min(r.first, mn);
    r.second = std::max(r.second, mx);
  }
  QSLIM_CHECK(r.first <= r.second, "min_max: input ", shape_str(x.shape()),
              " has no finite-comparable element (all NaN)");
  return r;
}

namespace {

// Calls fn(channel, value) for every element of x (as f64), channel = index along axis (0 when -1).
template <typename F>
void visit_channels(const Tensor& xd, int64_t axis, F&& fn) {
  const double* p = xd.data<double>();
  const ChannelLayout l = detail::channel_layout(xd.shape(), axis);
  detail::for_each_run(
      l, 0, l.numel(),
      [&](int64_t i, int64_t len, int64_t c) {
        for (int64_t k = 0; k < len; ++k) fn(c, p[i + k]);
      },
      [&](int64_t i, int64_t len, int64_t c0) {
        for (int64_t k = 0; k < len; ++k) fn(c0 + k, p[i + k]);
      });
}

}  // namespace

std::vector<double> mean_abs(const Tensor& x, int64_t axis) {
  check_input(x, axis, "mean_abs");
  QSLIM_CHECK(x.numel() > 0, "mean_abs: empty input ", shape_str(x.shape()));
  const Tensor xd = x.detach().to(DType::F64).contiguous();
  const int64_t channels = axis < 0 ? 1 : x.size(axis);
  const double per = static_cast<double>(x.numel() / channels);
  std::vector<double> m(channels, 0.0);
  visit_channels(xd, axis, [&](int64_t c, double v) { m[c] += std::fabs(v); });
  for (double& v : m) v /= per;
  return m;
}

ChannelMoments mean_std(const Tensor& x, int64_t axis, bool unbiased) {
  check_input(x, axis, "mean_std");
  QSLIM_CHECK(x.numel() > 0, "mean_std: empty input ", shape_str(x.shape()));
  const Tensor xd = x.detach().to(DType::F64).contiguous();
  const int64_t channels = axis < 0 ? 1 : x.size(axis);
  const int64_t per = x.numel() / channels;
  ChannelMoments m;
  m.mean.assign(channels, 0.0);
  m.std.assign(channels, 0.0);
  visit_channels(xd, axis, [&](int64_t c, double v) { m.mean[c] += v; });
  for (double& v : m.mean) v /= static_cast<double>(per);
  visit_channels(xd, axis, [&](int64_t c, double v) { m.std[c] += (v - m.mean[c]) * (v - m.mean[c]); });
  const double denom = unbiased ? static_cast<double>(per - 1) : static_cast<double>(per);
  for (double& v : m.std) v = denom > 0 ? std::sqrt(v / denom) : 0.0;
  return m;
}

}  // namespace qslim::quant
