// INT8 pooling kernels, NHWC uint8 (int8_conv.h). Windows are clipped to the image (padding never
// takes part); a 64-channel vector is the unit of work, with a masked tail.
//   max:        max over the window's valid pixels (same step and zero point in and out)
//   avg:        acc = sum - count * z_x;  v = (float(acc) * (s_x / s_y)) / float(count)
//   global avg: acc = sum - h * w * z_x;  f32: (float(acc) * s_x) / float(h * w);
//               u8:  v = (float(acc) * (s_x / s_y)) / float(h * w), then requantized to z_y
// Dividing last (not multiplying by 1 / count) keeps exact halves exact, so ties round to even.
// GCC 12 reports false -Wmaybe-uninitialized positives inside its own AVX-512 intrinsics headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/int8_conv.h"
#include "core/cpu/int8_requant.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {
namespace {

constexpr int64_t kGrainBytes = int64_t{1} << 16;

struct PoolWindow {
  int64_t batch, in_h, in_w, c, kh, kw, sh, sw, ph, pw, out_h, out_w;
};

PoolWindow pool_window(const char* op, int64_t batch, int64_t in_h, int64_t in_w, int64_t c, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  QSLIM_CHECK(batch >= 0 && in_h > 0 && in_w > 0 && c > 0, op, ": input [", batch, ", ", in_h, ", ", in_w, ", ", c,
              "] (NHWC): expected positive sizes");
  QSLIM_CHECK(kh > 0 && kw > 0 && sh > 0 && sw > 0, op, ": kernel ", kh, "x", kw, " and stride ", sh, "x", sw,
              " must be positive");
  // pad < kernel keeps at least one real pixel in every window.
  QSLIM_CHECK(ph >= 0 && pw >= 0 && ph < kh && pw < kw, op, ": padding ", ph, "x", pw,
              " must be non-negative and smaller than the kernel ", kh, "x", kw);
  QSLIM_CHECK(in_h + 2 * ph >= kh && in_w + 2 * pw >= kw, op, ": input ", in_h, "x", in_w, " with padding ", ph, "x",
              pw, " is smaller than the kernel ", kh, "x", kw);
  return {batch, in_h, in_w, c, kh, kw, sh, sw, ph, pw, (in_h + 2 * ph - kh) / sh + 1, (in_w + 2 * pw - kw) / sw + 1};
}

void check_scale(const char* op, const char* name, float s) {
  QSLIM_CHECK(std::isfinite(s) && s > 0.0f, op, ": ", name, " ", s, " must be positive and finite");
}

// Calls fn(n, oh) for every output row, threaded when the work is large.
template <typename F>
void for_output_rows(const PoolWindow& p, const F& fn) {
  const int64_t per_row = std::max<int64_t>(1, p.out_w * p.c * p.kh * p.kw);
  parallel_range(p.batch * p.out_h, std::max<int64_t>(1, kGrainBytes / per_row), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(r / p.out_h, r % p.out_h);
  });
}

// Sums of channels [c0, c0 + 64) over the window rows [h0, h1) x columns [w0, w1) of one image, in
// 4 x 16 int32 lanes (scalar: acc[64]).
#ifdef QSLIM_INT8_AVX512
inline void window_sum64(const uint8_t* img, const PoolWindow& p, int64_t c0, int64_t h0, int64_t h1, int64_t w0,
                         int64_t w1, __m512i acc[4]) {
  const __mmask64 m = int8_requant::tail_mask64(p.c - c0);
  for (int k = 0; k < 4; ++k) acc[k] = _mm512_setzero_si512();
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t iw = w0; iw < w1; ++iw) {
      const __m512i v = _mm512_maskz_loadu_epi8(m, img + (ih * p.in_w + iw) * p.c + c0);
      for (int k = 0; k < 4; ++k) acc[k] = _mm512_add_epi32(acc[k], _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(v, k)));
    }
  }
}
#endif

#if defined(QSLIM_INT8_AVX512) && defined(__AVX512VBMI__)
// Max pooling for narrow pixels (c < 64, kw * c <= 128): a 64-byte vector spans several pixels.
// Each output row first takes the vertical max of its window rows into a row buffer with zero
// padding (0 never beats a real uint8 pixel, and every window holds one), then each vector of q
// output pixels gathers its kw taps from two buffer vectors with one byte permute per tap.
class NarrowMaxPool {
 public:
  static constexpr int kMaxKw = 16;
  static bool applies(const PoolWindow& p) { return p.c < 64 && p.kw <= kMaxKw && p.kw * p.c <= 128; }

  explicit NarrowMaxPool(const PoolWindow& p) : p_(p) {
    q_ = std::min(64 / p.c, (128 - p.kw * p.c) / (p.sw * p.c) + 1);
    alignas(64) uint8_t idx[64];
    for (int64_t j = 0; j < p.kw; ++j) {
      for (int64_t k = 0; k < 64; ++k)
        idx[k] = static_cast<uint8_t>(k < q_ * p.c ? (k / p.c) * p.sw * p.c + k % p.c + j * p.c : 0);
      idx_[j] = _mm512_load_si512(idx);
    }
  }

  void row(const uint8_t* x, int64_t n, int64_t oh, uint8_t* y) const {
    const PoolWindow& p = p_;
    const int64_t run = p.in_w * p.c, lead = p.pw * p.c;
    thread_local std::vector<uint8_t> buf;
    const size_t need = static_cast<size_t>(lead + run + lead + 256);
    if (buf.size() < need) buf.assign(need, 0);
    uint8_t* v = buf.data();
    std::fill(v, v + lead, 0);
    std::fill(v + lead + run, v + need, 0);
    bool first = true;
    for (int64_t i = 0; i < p.kh; ++i) {
      const int64_t ih = oh * p.sh - p.ph + i;
      if (ih < 0 || ih >= p.in_h) continue;
      const uint8_t* src = x + (n * p.in_h + ih) * run;
      // Masked loads read nothing past the row; the zeros they give keep the right padding zero.
      for (int64_t k = 0; k < run; k += 64) {
        const __m512i cur = _mm512_maskz_loadu_epi8(int8_requant::tail_mask64(run - k), src + k);
        _mm512_storeu_si512(v + lead + k, first ? cur : _mm512_max_epu8(cur, _mm512_loadu_si512(v + lead + k)));
      }
      first = false;
    }
    uint8_t* yr = y + (n * p.out_h + oh) * p.out_w * p.c;
    for (int64_t ow = 0; ow < p.out_w; ow += q_) {
      const uint8_t* base = v + ow * p.sw * p.c;
      const __m512i a = _mm512_loadu_si512(base), b = _mm512_loadu_si512(base + 64);
      __m512i m = _mm512_permutex2var_epi8(a, idx_[0], b);
      for (int64_t j = 1; j < p.kw; ++j) m = _mm512_max_epu8(m, _mm512_permutex2var_epi8(a, idx_[j], b));
      _mm512_mask_storeu_epi8(yr + ow * p.c, int8_requant::tail_mask64(std::min(q_, p.out_w - ow) * p.c), m);
    }
  }

 private:
  PoolWindow p_;
  int64_t q_ = 1;  // output pixels per vector
  __m512i idx_[kMaxKw];
};
#endif

}  // namespace

void int8_maxpool_u8(const uint8_t* x, int64_t batch, int64_t in_h, int64_t in_w, int64_t c, int64_t kernel_h,
                     int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, uint8_t* y) {
  const PoolWindow p =
      pool_window("int8_maxpool_u8", batch, in_h, in_w, c, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w);
#if defined(QSLIM_INT8_AVX512) && defined(__AVX512VBMI__)
  if (NarrowMaxPool::applies(p)) {
    const NarrowMaxPool pool(p);
    for_output_rows(p, [&](int64_t n, int64_t oh) { pool.row(x, n, oh, y); });
    return;
  }
#endif
  for_output_rows(p, [&](int64_t n, int64_t oh) {
    const uint8_t* img = x + n * p.in_h * p.in_w * p.c;
    const int64_t h0 = std::max<int64_t>(0, oh * p.sh - p.ph), h1 = std::min(p.in_h, oh * p.sh - p.ph + p.kh);
    for (int64_t ow = 0; ow < p.out_w; ++ow) {
      const int64_t w0 = std::max<int64_t>(0, ow * p.sw - p.pw), w1 = std::min(p.in_w, ow * p.sw - p.pw + p.kw);
      uint8_t* yp = y + ((n * p.out_h + oh) * p.out_w + ow) * p.c;
      int64_t c0 = 0;
#ifdef QSLIM_INT8_AVX512
      for (; c0 < p.c; c0 += 64) {
        const __mmask64 m = int8_requant::tail_mask64(p.c - c0);
        __m512i best = _mm512_setzero_si512();
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw)
            best = _mm512_max_epu8(best, _mm512_maskz_loadu_epi8(m, img + (ih * p.in_w + iw) * p.c + c0));
        _mm512_mask_storeu_epi8(yp + c0, m, best);
      }
#endif
      for (int64_t ch = c0; ch < p.c; ++ch) {
        uint8_t best = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) best = std::max(best, img[(ih * p.in_w + iw) * p.c + ch]);
        yp[ch] = best;
      }
    }
  });
}

void int8_avgpool_u8(const uint8_t* x, int64_t batch, int64_t in_h, int64_t in_w, int64_t c, int64_t kernel_h,
                     int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                     float scale_x, int32_t zp_x, float scale_y, int32_t zp_y, uint8_t* y) {
  const char* op = "int8_avgpool_u8";
  const PoolWindow p = pool_window(op, batch, in_h, in_w, c, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w);
  check_scale(op, "scale_x", scale_x);
  check_scale(op, "scale_y", scale_y);
  const float ratio = scale_x / scale_y, zy = static_cast<float>(zp_y);
  for_output_rows(p, [&](int64_t n, int64_t oh) {
    const uint8_t* img = x + n * p.in_h * p.in_w * p.c;
    const int64_t h0 = std::max<int64_t>(0, oh * p.sh - p.ph), h1 = std::min(p.in_h, oh * p.sh - p.ph + p.kh);
    for (int64_t ow = 0; ow < p.out_w; ++ow) {
      const int64_t w0 = std::max<int64_t>(0, ow * p.sw - p.pw), w1 = std::min(p.in_w, ow * p.sw - p.pw + p.kw);
      const int32_t count = static_cast<int32_t>((h1 - h0) * (w1 - w0));
      const float fcount = static_cast<float>(count);
      uint8_t* yp = y + ((n * p.out_h + oh) * p.out_w + ow) * p.c;
      int64_t c0 = 0;
#ifdef QSLIM_INT8_AVX512
      const __m512i zc = _mm512_set1_epi32(count * zp_x);
      const __m512 vr = _mm512_set1_ps(ratio), vc = _mm512_set1_ps(fcount);
      const int8_requant::Requant16 requant(zp_y, 0, 255);
      for (; c0 < p.c; c0 += 64) {
        __m512i acc[4];
        window_sum64(img, p, c0, h0, h1, w0, w1, acc);
        for (int k = 0; k < 4 && c0 + 16 * k < p.c; ++k) {
          const __m512 v = _mm512_div_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[k], zc)), vr), vc);
          _mm_mask_storeu_epi8(yp + c0 + 16 * k, int8_requant::tail_mask16(p.c - c0 - 16 * k),
                               requant(v));
        }
      }
#endif
      for (int64_t ch = c0; ch < p.c; ++ch) {
        int32_t sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += img[(ih * p.in_w + iw) * p.c + ch];
        const float v = (static_cast<float>(sum - count * zp_x) * ratio) / fcount;
        yp[ch] = int8_requant::requant_u8(v, zy, 0.0f, 255.0f);
      }
    }
  });
}

namespace {

// acc[ch] = sum over the image's pixels - h * w * z_x, for every channel, into acc (c entries).
void global_sums(const uint8_t* img, int64_t hw, int64_t c, int32_t zp_x, int32_t* acc) {
  const int32_t offset = static_cast<int32_t>(hw) * zp_x;
  int64_t c0 = 0;
#ifdef QSLIM_INT8_AVX512
  const PoolWindow p{1, 1, hw, c, 1, 1, 1, 1, 0, 0, 1, 1};
  for (; c0 < c; c0 += 64) {
    __m512i s[4];
    window_sum64(img, p, c0, 0, 1, 0, hw, s);
    for (int k = 0; k < 4 && c0 + 16 * k < c; ++k)
      _mm512_mask_storeu_epi32(acc + c0 + 16 * k, int8_requant::tail_mask16(c - c0 - 16 * k),
                               _mm512_sub_epi32(s[k], _mm512_set1_epi32(offset)));
  }
#endif
  for (int64_t ch = c0; ch < c; ++ch) {
    int32_t sum = 0;
    for (int64_t i = 0; i < hw; ++i) sum += img[i * c + ch];
    acc[ch] = sum - offset;
  }
}

template <typename F>
void for_images(int64_t batch, int64_t hw, int64_t c, const F& fn) {
  parallel_range(batch, std::max<int64_t>(1, kGrainBytes / std::max<int64_t>(1, hw * c)), [&](int64_t n0, int64_t n1) {
    thread_local std::vector<int32_t> acc;
    if (static_cast<int64_t>(acc.size()) < c) acc.resize(static_cast<size_t>(c));
    for (int64_t n = n0; n < n1; ++n) fn(n, acc.data());
  });
}

void check_global(const char* op, int64_t batch, int64_t h, int64_t w, int64_t c, float scale_x) {
  QSLIM_CHECK(batch >= 0 && h > 0 && w > 0 && c > 0, op, ": input [", batch, ", ", h, ", ", w, ", ", c,
              "] (NHWC): expected positive sizes");
  QSLIM_CHECK(h * w <= (int64_t{1} << 23), op, ": ", h, "x", w, " pixels overflow the int32 channel sums");
  check_scale(op, "scale_x", scale_x);
}

}  // namespace

void int8_global_avgpool_f32(const uint8_t* x, int64_t batch, int64_t h, int64_t w, int64_t c, float scale_x,
                             int32_t zp_x, float* y) {
  check_global("int8_global_avgpool_f32", batch, h, w, c, scale_x);
  const int64_t hw = h * w;
  const float fhw = static_cast<float>(hw);
  for_images(batch, hw, c, [&](int64_t n, int32_t* acc) {
    global_sums(x + n * hw * c, hw, c, zp_x, acc);
    for (int64_t ch = 0; ch < c; ++ch) y[n * c + ch] = (static_cast<float>(acc[ch]) * scale_x) / fhw;
  });
}

void int8_global_avgpool_u8(const uint8_t* x, int64_t batch, int64_t h, int64_t w, int64_t c, float scale_x,
                            int32_t zp_x, float scale_y, int32_t zp_y, uint8_t* y) {
  const char* op = "int8_global_avgpool_u8";
  check_global(op, batch, h, w, c, scale_x);
  check_scale(op, "scale_y", scale_y);
  const int64_t hw = h * w;
  const float fhw = static_cast<float>(hw), ratio = scale_x / scale_y, zy = static_cast<float>(zp_y);
  for_images(batch, hw, c, [&](int64_t n, int32_t* acc) {
    global_sums(x + n * hw * c, hw, c, zp_x, acc);
    for (int64_t ch = 0; ch < c; ++ch)
      y[n * c + ch] = int8_requant::requant_u8((static_cast<float>(acc[ch]) * ratio) / fhw, zy, 0.0f, 255.0f);
  });
}

}  // namespace qslim::cpu
