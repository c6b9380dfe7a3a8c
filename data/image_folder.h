// A folder of labelled images, laid out as torchvision's ImageFolder expects:
//   root/<class_name>/**/*.png|jpg|jpeg|bmp   (extensions in any letter case; sub-folders are searched)
// Classes are the sub-folders of root sorted by name, label = index in that order; the images of a
// class are sorted by folder then file name. Names starting with '.' are skipped. Images are decoded
// with stb_image, converted to gray or RGB, and optionally resized (bilinear) to a fixed size.
//
//   ImageFolderDataset folder("/data/flowers/train", {.channels = 3, .height = 64, .width = 64});
//   auto in_memory = folder.load_all();          // eager: every image decoded once, u8 in memory
//   DataLoader loader(std::make_shared<ImageFolderDataset>(folder), {...});  // lazy: decoded per batch
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace qslim::data {

struct ImageFolderOptions {
  int channels = 3;        // 1: gray, 3: RGB (alpha is dropped; see interleaved_to_planes in data/image_ops.h)
  int64_t height = 0;      // both > 0: resize every image to height x width (after the channel conversion);
  int64_t width = 0;       // both 0: keep the decoded size (then a batch needs images of one size)
  bool antialias = true;   // see resize_planes in data/image_ops.h
};

class ImageFolderDataset : public Dataset {
 public:
  // Scans `root`. Errors: root not a directory, no class folders in root, a class folder without
  // images (each names the folder), invalid options.
  explicit ImageFolderDataset(const std::string& root, ImageFolderOptions options = {});

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  // f32 [C, H, W] with pixels / 255, decoded from disk on each call.
  Example get(int64_t index) const override;
  void get_batch(const std::vector<int64_t>& indices, Batch& out) const override;
  using Dataset::get_batch;

  // One image as u8 [C, H, W]. An undecodable file is an error naming it and stb_image's reason.
  Tensor decode(int64_t index) const;
  // Every image decoded once (in parallel) into a TensorDataset of u8 [N, C, H, W]; without a resize
  // all images must have the same size (the error names two files that differ).
  std::shared_ptr<TensorDataset> load_all() const;

  const std::string& root() const { return root_; }
  const ImageFolderOptions& options() const { return opts_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<std::string>& files() const { return files_; }  // full paths, in index order
  const std::vector<int64_t>& labels() const { return labels_; }

 private:
  void scan();

  std::string root_;
  ImageFolderOptions opts_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
};

}  // namespace qslim::data
