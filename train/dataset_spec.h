// The --dataset argument of `qslim train` / `qslim eval` and the data it names:
//   fashion-mnist[:DIR]              28x28 gray, 10 classes (DIR: the IDX files; default location otherwise)
//   cifar10:DIR | cifar100:DIR       32x32 RGB, 10 or 100 classes (binary distributions, data/cifar.h)
//   folder:DIR[:size=N,gray]         DIR/train/<class>/*.png|jpg|... and DIR/test/<class>/... (or val/),
//                                    resized to N x N when size is given, gray (1 channel) or RGB
// The image size, channel count and class count feed the model spec's defaults and the
// normalisation statistics (computed per channel from the training set except for Fashion-MNIST).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace qslim::train {

struct DatasetSpec {
  std::string kind;   // fashion-mnist | cifar10 | cifar100 | folder
  std::string dir;    // empty only for fashion-mnist (its default location)
  int64_t size = 0;   // folder: resize to size x size (0: keep the decoded size)
  bool gray = false;  // folder: one channel instead of RGB

  // Errors name the text and list the allowed forms.
  static DatasetSpec parse(const std::string& text);
  std::string str() const;  // canonical text, parse(str()) == *this
  bool operator==(const DatasetSpec&) const = default;
};

struct LoadedData {
  std::shared_ptr<const data::Dataset> train, test;  // train is null when not requested
  int64_t channels = 0, height = 0, width = 0, num_classes = 0;
  std::string description;  // e.g. "CIFAR-10 (/data/cifar)"
};

// Loads the test split, and the training split when `with_train`; `limit` >= 0 keeps the first
// `limit` examples of each split.
LoadedData load_dataset(const DatasetSpec& spec, int64_t limit = -1, bool with_train = true);

// Per-channel mean and (population) standard deviation of the pixel values over `dataset`.
void channel_mean_std(const data::Dataset& dataset, std::vector<float>& mean, std::vector<float>& std);

// Fashion-MNIST's fixed statistics, or channel_mean_std of `data.train` for every other dataset.
void normalization_for(const DatasetSpec& spec, const LoadedData& data, std::vector<float>& mean,
                       std::vector<float>& std);

// Adds in_channels / num_classes / image_size to a model spec ("lenet" -> "lenet:in_channels=3,
// image_size=32") when the data differs from the registry defaults (1, 10, 28) and the spec does not
// set them already (image_size only when `with_image_size`). Non-square images are an error.
std::string model_spec_for(const std::string& model_spec, const LoadedData& data, bool with_image_size = true);

// model_spec_for, without image_size for models that do not take it (those with global pooling):
// the registry is asked by building the model once.
std::string resolve_model_spec(const std::string& model_spec, const LoadedData& data);

}  // namespace qslim::train
