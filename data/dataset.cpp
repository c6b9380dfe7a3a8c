#include "data/dataset.h"

#include <atomic>
#include <cstring>

namespace qslim::data {

void ensure_buffer(Tensor& buf, const Shape& shape, DType dtype) {
  if (buf.defined() && buf.shape() == shape && buf.dtype() == dtype && buf.offset() == 0 && buf.is_contiguous() &&
      !buf.requires_grad() && buf.impl_ptr().use_count() == 1 && buf.impl().storage.use_count() == 1) {
    // Pairs with the release in the last other owner's reference drop, so its reads finish first.
    std::atomic_thread_fence(std::memory_order_acquire);
    buf.bump_version();
    return;
  }
  buf = Tensor::empty(shape, dtype);
}

void Dataset::check_index(int64_t index, const char* op) const {
  QSLIM_CHECK(index >= 0 && index < size(), op, ": index ", index, " out of range for a dataset of ", size(),
              " examples");
}

Batch Dataset::get_batch(const std::vector<int64_t>& indices) const {
  Batch b;
  get_batch(indices, b);
  return b;
}

void Dataset::get_batch(const std::vector<int64_t>& indices, Batch& out) const {
  QSLIM_CHECK(!indices.empty(), "Dataset::get_batch: no indices given");
  const int64_t n = static_cast<int64_t>(indices.size());
  Example first = get(indices[0]);
  Shape shape = first.image.shape();
  QSLIM_CHECK(first.image.dtype() == DType::F32, "Dataset::get_batch: example ", indices[0], " has dtype ",
              dtype_name(first.image.dtype()), ", expected f32");
  Shape batch_shape = shape;
  batch_shape.insert(batch_shape.begin(), n);
  ensure_buffer(out.images, batch_shape, DType::F32);
  ensure_buffer(out.labels, {n}, DType::I64);
  const int64_t per = numel_of(shape);
  float* dst = out.images.data<float>();
  int64_t* lab = out.labels.data<int64_t>();
  for (int64_t b = 0; b < n; ++b) {
    Example e = b == 0 ? first : get(indices[b]);
    QSLIM_CHECK(e.image.shape() == shape && e.image.dtype() == DType::F32, "Dataset::get_batch: example ",
                indices[b], " has shape ", shape_str(e.image.shape()), " and dtype ", dtype_name(e.image.dtype()),
                ", expected f32 ", shape_str(shape), " like example ", indices[0]);
    Tensor c = e.image.contiguous();
    std::memcpy(dst + b * per, c.data<float>(), per * sizeof(float));
    lab[b] = e.label;
  }
}

TensorDataset::TensorDataset(Tensor images, Tensor labels, float scale) : scale_(scale) {
  QSLIM_CHECK(images.defined() && labels.defined(), "TensorDataset: images and labels must be defined");
  QSLIM_CHECK(images.dtype() == DType::U8, "TensorDataset: images must be u8, got ", dtype_name(images.dtype()));
  QSLIM_CHECK(images.dim() == 3 || images.dim() == 4, "TensorDataset: images must be [N, C, H, W] or [N, H, W], got ",
              shape_str(images.shape()));
  if (images.dim() == 3) images = images.unsqueeze(1);
  QSLIM_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), "TensorDataset: labels ",
              shape_str(labels.shape()), " do not match ", images.size(0), " images ", shape_str(images.shape()));
  QSLIM_CHECK(!labels.is_floating_point(), "TensorDataset: labels must have an integer dtype, got ",
              dtype_name(labels.dtype()));
  images_ = images.contiguous();
  labels_ = labels.to(DType::I64).contiguous();
}

Example TensorDataset::get(int64_t index) const {
  check_index(index, "TensorDataset::get");
  const Shape shape = image_shape();
  const int64_t per = numel_of(shape);
  Tensor img = Tensor::empty(shape, DType::F32);
  const uint8_t* src = images_.data<uint8_t>() + index * per;
  float* dst = img.data<float>();
  for (int64_t i = 0; i < per; ++i) dst[i] = static_cast<float>(src[i]) * scale_;
  return {img, labels_.data<int64_t>()[index]};
}

void TensorDataset::get_batch(const std::vector<int64_t>& indices, Batch& out) const {
  const int64_t n = static_cast<int64_t>(indices.size());
  QSLIM_CHECK(n > 0, "TensorDataset::get_batch: no indices given");
  for (int64_t idx : indices) check_index(idx, "TensorDataset::get_batch");
  const Shape shape = image_shape();
  ensure_buffer(out.images, {n, shape[0], shape[1], shape[2]}, DType::F32);
  ensure_buffer(out.labels, {n}, DType::I64);
  const int64_t per = numel_of(shape);
  const uint8_t* src = images_.data<uint8_t>();
  const int64_t* lab = labels_.data<int64_t>();
  float* dst = out.images.data<float>();
  int64_t* dst_lab = out.labels.data<int64_t>();
  const float scale = scale_;
  for (int64_t b = 0; b < n; ++b) {
    const uint8_t* s = src + indices[b] * per;
    float* d = dst + b * per;
    for (int64_t i = 0; i < per; ++i) d[i] = static_cast<float>(s[i]) * scale;
    dst_lab[b] = lab[indices[b]];
  }
}

}  // namespace qslim::data
