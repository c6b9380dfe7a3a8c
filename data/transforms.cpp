#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "data/image_ops.h"

namespace qslim::data {

namespace {

// The batch as 4-D contiguous f32 (a view of `t`), after checking it.
Tensor as_batch(const Tensor& t, const char* op) {
  QSLIM_CHECK(t.defined(), op, ": undefined input");
  QSLIM_CHECK(t.dtype() == DType::F32, op, ": expected f32 images, got ", dtype_name(t.dtype()));
  QSLIM_CHECK(t.dim() == 3 || t.dim() == 4, op, ": expected [B, C, H, W] or [C, H, W], got ", shape_str(t.shape()));
  QSLIM_CHECK(t.is_contiguous(), op, ": expected a contiguous batch, got strides ", shape_str(t.strides()));
  QSLIM_CHECK(!t.requires_grad(), op, ": transforms work in place and do not take tensors that require grad");
  return t.dim() == 4 ? t : make_view(t, {1, t.size(0), t.size(1), t.size(2)}, contiguous_strides({1, t.size(0), t.size(1), t.size(2)}), t.offset());
}

// Uniform integer in [0, n].
int64_t draw(Generator& gen, int64_t n) { return static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(n + 1)); }

}  // namespace

Normalize::Normalize(std::vector<float> mean, std::vector<float> std) : mean_(std::move(mean)), std_(std::move(std)) {
  QSLIM_CHECK(!mean_.empty() && mean_.size() == std_.size(), "Normalize: mean has ", mean_.size(),
              " values and std has ", std_.size(), ", expected the same non-zero count");
  for (size_t c = 0; c < std_.size(); ++c)
    QSLIM_CHECK(std_[c] > 0.0f, "Normalize: std[", c, "] = ", std_[c], " must be > 0");
}

Tensor Normalize::operator()(const Tensor& batch, Generator&) const {
  Tensor x = as_batch(batch, "Normalize");
  const int64_t B = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
  QSLIM_CHECK(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == C, "Normalize: ", mean_.size(),
              " means and stds for images ", shape_str(batch.shape()), " with ", C, " channels");
  float* p = x.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const size_t k = mean_.size() == 1 ? 0 : static_cast<size_t>(c);
      const float m = mean_[k], s = std_[k];
      float* q = p + (b * C + c) * plane;
      for (int64_t i = 0; i < plane; ++i) q[i] = (q[i] - m) / s;
    }
  batch.bump_version();
  return batch;
}

RandomCrop::RandomCrop(int64_t height, int64_t width, int64_t padding)
    : height_(height), width_(width), padding_(padding) {
  QSLIM_CHECK(height > 0 && width > 0 && padding >= 0, "RandomCrop: need size > 0 and padding >= 0, got ", height,
              " x ", width, " with padding ", padding);
}

Tensor RandomCrop::operator()(const Tensor& batch, Generator& gen) const {
  Tensor x = as_batch(batch, "RandomCrop");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), p = padding_;
  QSLIM_CHECK(H + 2 * p >= height_ && W + 2 * p >= width_, "RandomCrop: a ", height_, " x ", width_,
              " crop does not fit images ", shape_str(batch.shape()), " padded by ", p);
  const bool in_place = height_ == H && width_ == W;
  Tensor out = in_place ? batch : Tensor::empty(batch.dim() == 4 ? Shape{B, C, height_, width_} : Shape{C, height_, width_});
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  std::vector<float> scratch(in_place ? H * W : 0);
  const int64_t oh = height_, ow = width_;
  for (int64_t b = 0; b < B; ++b) {
    // Window origin in padded coordinates; torchvision draws top then left, none when there is no slack.
    int64_t top = 0, left = 0;
    if (H + 2 * p != oh || W + 2 * p != ow) {
      top = draw(gen, H + 2 * p - oh);
      left = draw(gen, W + 2 * p - ow);
    }
    const int64_t dy = top - p, dx = left - p;  // output (y, x) reads input (y + dy, x + dx)
    const int64_t x0 = std::clamp<int64_t>(-dx, 0, ow), x1 = std::clamp<int64_t>(W - dx, x0, ow);
    for (int64_t c = 0; c < C; ++c) {
      const float* s = src + (b * C + c) * H * W;
      if (in_place) {
        std::memcpy(scratch.data(), s, H * W * sizeof(float));
        s = scratch.data();
      }
      float* d = dst + (b * C + c) * oh * ow;
      for (int64_t y = 0; y < oh; ++y) {
        float* row = d + y * ow;
        const int64_t sy = y + dy;
        if (sy < 0 || sy >= H) {
          std::fill(row, row + ow, 0.0f);
          continue;
        }
        std::fill(row, row + x0, 0.0f);
        std::memcpy(row + x0, s + sy * W + x0 + dx, (x1 - x0) * sizeof(float));
        std::fill(row + x1, row + ow, 0.0f);
      }
    }
  }
  out.bump_version();
  return out;
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  QSLIM_CHECK(p >= 0.0 && p <= 1.0, "RandomHorizontalFlip: p must be in [0, 1], got ", p);
}

Tensor RandomHorizontalFlip::operator()(const Tensor& batch, Generator& gen) const {
  Tensor x = as_batch(batch, "RandomHorizontalFlip");
  const int64_t B = x.size(0), rows = x.size(1) * x.size(2), W = x.size(3);
  float* p = x.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    if (!(gen.uniform() < p_)) continue;
    float* img = p + b * rows * W;
    for (int64_t r = 0; r < rows; ++r) std::reverse(img + r * W, img + (r + 1) * W);
  }
  batch.bump_version();
  return batch;
}

Resize::Resize(int64_t height, int64_t width, bool antialias) : height_(height), width_(width), antialias_(antialias) {
  QSLIM_CHECK(height > 0 && width > 0, "Resize: size must be > 0, got ", height, " x ", width);
}

Tensor Resize::operator()(const Tensor& batch, Generator&) const {
  Tensor x = as_batch(batch, "Resize");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  QSLIM_CHECK(H > 0 && W > 0, "Resize: cannot resize empty images ", shape_str(batch.shape()));
  if (H == height_ && W == width_) return batch;
  Tensor out = Tensor::empty(batch.dim() == 4 ? Shape{B, C, height_, width_} : Shape{C, height_, width_});
  resize_planes(x.data<float>(), B * C, H, W, out.data<float>(), height_, width_, antialias_);
  return out;
}

CenterCrop::CenterCrop(int64_t height, int64_t width) : height_(height), width_(width) {
  QSLIM_CHECK(height > 0 && width > 0, "CenterCrop: size must be > 0, got ", height, " x ", width);
}

namespace {

// Input index of output index 0 along an axis of `size` cropped (or padded) to `crop`.
int64_t center_origin(int64_t size, int64_t crop) {
  if (crop <= size) return static_cast<int64_t>(std::nearbyint((size - crop) / 2.0));  // ties to even, as Python
  return -((crop - size) / 2);
}

}  // namespace

Tensor CenterCrop::operator()(const Tensor& batch, Generator&) const {
  Tensor x = as_batch(batch, "CenterCrop");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (H == height_ && W == width_) return batch;
  const int64_t oh = height_, ow = width_, dy = center_origin(H, oh), dx = center_origin(W, ow);
  Tensor out = Tensor::empty(batch.dim() == 4 ? Shape{B, C, oh, ow} : Shape{C, oh, ow});
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  const int64_t x0 = std::clamp<int64_t>(-dx, 0, ow), x1 = std::clamp<int64_t>(W - dx, x0, ow);
  for (int64_t p = 0; p < B * C; ++p) {
    const float* s = src + p * H * W;
    float* d = dst + p * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      float* row = d + y * ow;
      const int64_t sy = y + dy;
      if (sy < 0 || sy >= H) {
        std::fill(row, row + ow, 0.0f);
        continue;
      }
      std::fill(row, row + x0, 0.0f);
      std::copy(s + sy * W + x0 + dx, s + sy * W + x1 + dx, row + x0);
      std::fill(row + x1, row + ow, 0.0f);
    }
  }
  return out;
}

Grayscale::Grayscale(int num_output_channels) : out_channels_(num_output_channels) {
  QSLIM_CHECK(num_output_channels == 1 || num_output_channels == 3,
              "Grayscale: num_output_channels must be 1 or 3, got ", num_output_channels);
}

Tensor Grayscale::operator()(const Tensor& batch, Generator&) const {
  Tensor x = as_batch(batch, "Grayscale");
  const int64_t B = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
  QSLIM_CHECK(C == 1 || C == 3, "Grayscale: expected 1 (gray) or 3 (RGB) channels, got images ",
              shape_str(batch.shape()));
  if (C == out_channels_ && C == 1) return batch;
  const Shape shape = batch.dim() == 4 ? Shape{B, out_channels_, x.size(2), x.size(3)}
                                       : Shape{out_channels_, x.size(2), x.size(3)};
  // RGB -> gray can overwrite the input in place (the R plane is the first output plane).
  Tensor out = C == 3 && out_channels_ == 3 ? batch : Tensor::empty(shape);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    const float* s = src + b * C * plane;
    float* d = dst + b * out_channels_ * plane;
    if (C == 3) {
      for (int64_t i = 0; i < plane; ++i) d[i] = kLumaR * s[i] + kLumaG * s[plane + i] + kLumaB * s[2 * plane + i];
    } else {
      std::copy(s, s + plane, d);
    }
    for (int c = 1; c < out_channels_; ++c) std::copy(d, d + plane, d + c * plane);
  }
  out.bump_version();
  return out;
}

Compose::Compose(std::vector<TransformPtr> transforms) : transforms_(std::move(transforms)) {
  for (size_t i = 0; i < transforms_.size(); ++i)
    QSLIM_CHECK(transforms_[i] != nullptr, "Compose: transform ", i, " is null");
}

Tensor Compose::operator()(const Tensor& batch, Generator& gen) const {
  Tensor x = batch;
  for (const TransformPtr& t : transforms_) x = (*t)(x, gen);
  return x;
}

}  // namespace qslim::data
