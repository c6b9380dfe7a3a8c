// Datasets of labelled images. get(i) gives one example; get_batch gathers many into f32
// [B, C, H, W] images and i64 [B] labels, reusing the caller's buffers when it can.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace qslim::data {

struct Example {
  Tensor image;  // f32 [C, H, W]
  int64_t label = 0;
};

struct Batch {
  Tensor images;  // f32 [B, C, H, W]
  Tensor labels;  // i64 [B]
};

// Makes `buf` a contiguous tensor of `shape` and `dtype`. Its storage is kept (and its version
// bumped) when the shape and dtype already match and no other handle or view references it;
// otherwise a new tensor is allocated, so nobody else ever sees the buffer change.
void ensure_buffer(Tensor& buf, const Shape& shape, DType dtype);

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  // Fills `out` with the examples at `indices`. The default stacks get(i) (all examples must have
  // the same shape); datasets override it with a fast path. Must be safe to call from a worker thread.
  virtual void get_batch(const std::vector<int64_t>& indices, Batch& out) const;
  Batch get_batch(const std::vector<int64_t>& indices) const;

 protected:
  void check_index(int64_t index, const char* op) const;
};

// Images held in memory as u8 [N, C, H, W]; pixels are returned as f32 value * scale (by default
// 1/255, giving [0, 1]).
class TensorDataset : public Dataset {
 public:
  // images: u8 [N, C, H, W] or [N, H, W] (one channel); labels: any integer dtype, [N].
  TensorDataset(Tensor images, Tensor labels, float scale = 1.0f / 255.0f);

  int64_t size() const override { return images_.size(0); }
  Example get(int64_t index) const override;
  void get_batch(const std::vector<int64_t>& indices, Batch& out) const override;
  using Dataset::get_batch;

  const Tensor& images() const { return images_; }  // u8 [N, C, H, W]
  const Tensor& labels() const { return labels_; }  // i64 [N]
  Shape image_shape() const { return {images_.size(1), images_.size(2), images_.size(3)}; }

 private:
  Tensor images_, labels_;
  float scale_;
};

}  // namespace qslim::data
