// Fashion-MNIST (Zalando): 60000 training and 10000 test images of 28x28 grey pixels, 10 classes,
// in the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (uncompressed copies without .gz also work).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "data/dataset.h"

namespace qslim::data {

inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

// `dir` when not empty, else $QSLIM_FASHION_MNIST when set, else kFashionMnistDefaultDir.
std::string fashion_mnist_dir(const std::string& dir = "");

// Loads the training or test split as u8 [N, 1, 28, 28] images with labels in 0..9; `limit` >= 0
// keeps only the first `limit` examples. Errors name the offending file.
std::shared_ptr<TensorDataset> load_fashion_mnist(bool train, const std::string& dir = "", int64_t limit = -1);

// "T-shirt/top", "Trouser", ..., "Ankle boot", indexed by label.
const std::array<const char*, 10>& fashion_mnist_classes();

}  // namespace qslim::data
