#include "data/fashion_mnist.h"

#include <cstdlib>
#include <filesystem>

#include "data/idx.h"

namespace qslim::data {

namespace {

// The .gz file when present, else the uncompressed one; errors name both candidates.
std::string find_file(const std::string& dir, const std::string& stem) {
  const std::filesystem::path base = std::filesystem::path(dir) / stem;
  const std::string gz = base.string() + ".gz";
  std::error_code ec;
  if (std::filesystem::is_regular_file(gz, ec)) return gz;
  if (std::filesystem::is_regular_file(base, ec)) return base.string();
  QSLIM_FAIL("load_fashion_mnist: missing file ", gz, " (or ", base.string(),
             "); set QSLIM_FASHION_MNIST or pass the directory holding the Fashion-MNIST files");
}

}  // namespace

std::string fashion_mnist_dir(const std::string& dir) {
  if (!dir.empty()) return dir;
  if (const char* env = std::getenv("QSLIM_FASHION_MNIST"); env && *env) return env;
  return kFashionMnistDefaultDir;
}

std::shared_ptr<TensorDataset> load_fashion_mnist(bool train, const std::string& dir, int64_t limit) {
  const std::string root = fashion_mnist_dir(dir);
  const std::string prefix = train ? "train" : "t10k";
  const std::string image_path = find_file(root, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_file(root, prefix + "-labels-idx1-ubyte");
  Shape image_header, label_header;
  Tensor images = read_idx_images(image_path, limit, &image_header);
  Tensor labels = read_idx_labels(label_path, limit, &label_header);
  QSLIM_CHECK(images.size(1) == 28 && images.size(2) == 28, "load_fashion_mnist: ", image_path,
              ": expected 28 x 28 images, found ", images.size(1), " x ", images.size(2));
  QSLIM_CHECK(image_header[0] == label_header[0], "load_fashion_mnist: ", image_path, " holds ", image_header[0],
              " images but ", label_path, " holds ", label_header[0], " labels");
  const uint8_t* lab = labels.data<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    QSLIM_CHECK(lab[i] < 10, "load_fashion_mnist: ", label_path, ": label ", int(lab[i]), " at index ", i,
                " is not a class in 0..9");
  return std::make_shared<TensorDataset>(images.unsqueeze(1), labels);
}

const std::array<const char*, 10>& fashion_mnist_classes() {
  static const std::array<const char*, 10> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace qslim::data
