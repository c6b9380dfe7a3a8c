// Batch transforms for f32 images [B, C, H, W] (a single image [C, H, W] also works). Random ones
// draw from the Generator they are given, sample by sample in batch order, so a seeded generator
// reproduces the augmentation exactly. Transforms write into `batch` when the output has its shape
// (the DataLoader hands them its own buffers); pass a clone to keep an input.
#pragma once
#include <memory>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace qslim::data {

class Transform {
 public:
  virtual ~Transform() = default;
  virtual Tensor operator()(const Tensor& batch, Generator& gen) const = 0;
};

using TransformPtr = std::shared_ptr<const Transform>;

// x = (x - mean[c]) / std[c]; one value each applies to every channel.
class Normalize : public Transform {
 public:
  Normalize(std::vector<float> mean, std::vector<float> std);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  std::vector<float> mean_, std_;
};

// Pads each image by `padding` zeros on every side, then crops a height x width window at a uniformly
// drawn position (torchvision's RandomCrop with padding and fill 0).
class RandomCrop : public Transform {
 public:
  explicit RandomCrop(int64_t size, int64_t padding = 0) : RandomCrop(size, size, padding) {}
  RandomCrop(int64_t height, int64_t width, int64_t padding);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  int64_t height_, width_, padding_;
};

// Mirrors each image left-right with probability p.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  double p_;
};

// Resamples every image to height x width with a bilinear filter (see resize_planes in data/image_ops.h;
// `antialias` as torchvision's Resize). Returns the batch itself when it already has that size.
class Resize : public Transform {
 public:
  explicit Resize(int64_t size) : Resize(size, size) {}
  Resize(int64_t height, int64_t width, bool antialias = true);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  int64_t height_, width_;
  bool antialias_;
};

// Takes the central height x width window (torchvision's CenterCrop: the origin is round((H - h) / 2)
// with Python's round-half-to-even, and an image smaller than the window is padded with zeros around it).
class CenterCrop : public Transform {
 public:
  explicit CenterCrop(int64_t size) : CenterCrop(size, size) {}
  CenterCrop(int64_t height, int64_t width);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  int64_t height_, width_;
};

// RGB (3 channels) to gray with the BT.601 luma weights of data/image_ops.h, repeated over
// `num_output_channels` (1 or 3); gray (1 channel) input is repeated likewise.
class Grayscale : public Transform {
 public:
  explicit Grayscale(int num_output_channels = 1);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  int out_channels_;
};

class Compose : public Transform {
 public:
  explicit Compose(std::vector<TransformPtr> transforms);
  Tensor operator()(const Tensor& batch, Generator& gen) const override;

 private:
  std::vector<TransformPtr> transforms_;
};

}  // namespace qslim::data
