#include "data/image_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace qslim::data {

void interleaved_to_planes(const uint8_t* src, int64_t height, int64_t width, int in_channels, uint8_t* dst,
                           int out_channels) {
  QSLIM_CHECK(in_channels >= 1 && in_channels <= 4, "interleaved_to_planes: in_channels must be 1 (gray), 2 "
              "(gray+alpha), 3 (RGB) or 4 (RGBA), got ", in_channels);
  QSLIM_CHECK(out_channels == 1 || out_channels == 3, "interleaved_to_planes: out_channels must be 1 (gray) or 3 "
              "(RGB), got ", out_channels);
  QSLIM_CHECK(height >= 0 && width >= 0, "interleaved_to_planes: negative size ", height, " x ", width);
  const int64_t n = height * width;
  const int64_t ic = in_channels;
  const bool color = in_channels >= 3;
  if (out_channels == 1) {
    if (color)
      for (int64_t i = 0; i < n; ++i) dst[i] = luma_u8(src[i * ic], src[i * ic + 1], src[i * ic + 2]);
    else
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i * ic];
    return;
  }
  uint8_t *r = dst, *g = dst + n, *b = dst + 2 * n;
  if (color) {
    for (int64_t i = 0; i < n; ++i) {
      r[i] = src[i * ic];
      g[i] = src[i * ic + 1];
      b[i] = src[i * ic + 2];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) r[i] = g[i] = b[i] = src[i * ic];
  }
}

namespace {

// For each output position along one axis: the first input index, the tap count and the normalised
// weights (row `o` of `w`, `stride` floats apart). Follows PIL's ImagingResample coefficient setup.
struct Taps {
  std::vector<int64_t> start;
  std::vector<int64_t> count;
  std::vector<float> w;
  int64_t stride = 0;
};

Taps make_taps(int64_t in, int64_t out, bool antialias) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double filter_scale = antialias ? std::max(scale, 1.0) : 1.0;
  const double support = filter_scale;  // the triangle filter reaches 1 input pixel, widened by the scale
  Taps t;
  t.stride = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.start.resize(out);
  t.count.resize(out);
  t.w.assign(out * t.stride, 0.0f);
  std::vector<double> k(t.stride);
  for (int64_t o = 0; o < out; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    double total = 0.0;
    for (int64_t j = lo; j < hi; ++j) {
      const double x = std::abs((static_cast<double>(j) - center + 0.5) / filter_scale);
      k[j - lo] = x < 1.0 ? 1.0 - x : 0.0;
      total += k[j - lo];
    }
    // Drop zero-weight taps at both ends (they arise at exact pixel centres).
    int64_t first = 0, last = hi - lo;
    while (first < last && k[first] == 0.0) ++first;
    while (last > first && k[last - 1] == 0.0) --last;
    t.start[o] = lo + first;
    t.count[o] = last - first;
    for (int64_t j = first; j < last; ++j) t.w[o * t.stride + (j - first)] = static_cast<float>(k[j] / total);
  }
  return t;
}

inline void store(float v, float* d) { *d = v; }
inline void store(float v, uint8_t* d) { *d = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f) + 0.5f); }

template <typename T>
void resize_impl(const T* src, int64_t planes, int64_t in_h, int64_t in_w, T* dst, int64_t out_h, int64_t out_w,
                 bool antialias) {
  QSLIM_CHECK(planes >= 0 && in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0, "resize_planes: sizes must be positive, "
              "got ", planes, " planes of ", in_h, " x ", in_w, " to ", out_h, " x ", out_w);
  if (in_h == out_h && in_w == out_w) {
    std::memmove(dst, src, static_cast<size_t>(planes * in_h * in_w) * sizeof(T));
    return;
  }
  const Taps tx = make_taps(in_w, out_w, antialias), ty = make_taps(in_h, out_h, antialias);
  std::vector<float> tmp(static_cast<size_t>(in_h * out_w)), acc(static_cast<size_t>(out_w));
  for (int64_t p = 0; p < planes; ++p) {
    const T* s = src + p * in_h * in_w;
    // Horizontal pass: every input row to out_w columns.
    for (int64_t y = 0; y < in_h; ++y) {
      const T* row = s + y * in_w;
      float* t = tmp.data() + y * out_w;
      for (int64_t x = 0; x < out_w; ++x) {
        const float* w = tx.w.data() + x * tx.stride;
        const T* r = row + tx.start[x];
        float sum = 0.0f;
        for (int64_t k = 0; k < tx.count[x]; ++k) sum += w[k] * static_cast<float>(r[k]);
        t[x] = sum;
      }
    }
    // Vertical pass: blend whole rows of the intermediate.
    T* d = dst + p * out_h * out_w;
    for (int64_t y = 0; y < out_h; ++y) {
      const float* w = ty.w.data() + y * ty.stride;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t k = 0; k < ty.count[y]; ++k) {
        const float wk = w[k];
        const float* r = tmp.data() + (ty.start[y] + k) * out_w;
        for (int64_t x = 0; x < out_w; ++x) acc[x] += wk * r[x];
      }
      T* o = d + y * out_w;
      for (int64_t x = 0; x < out_w; ++x) store(acc[x], o + x);
    }
  }
}

}  // namespace

void resize_planes(const float* src, int64_t planes, int64_t in_h, int64_t in_w, float* dst, int64_t out_h,
                   int64_t out_w, bool antialias) {
  resize_impl(src, planes, in_h, in_w, dst, out_h, out_w, antialias);
}

void resize_planes(const uint8_t* src, int64_t planes, int64_t in_h, int64_t in_w, uint8_t* dst, int64_t out_h,
                   int64_t out_w, bool antialias) {
  resize_impl(src, planes, in_h, in_w, dst, out_h, out_w, antialias);
}

}  // namespace qslim::data
