#include "data/cifar.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

namespace qslim::data {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kPixels = 3 * 32 * 32;

struct Format {
  const char* name;
  int64_t label_bytes;
  int64_t record() const { return label_bytes + kPixels; }
  const char* record_desc() const {
    return label_bytes == 1 ? "1 label byte + 3072 pixel bytes" : "2 label bytes (coarse, fine) + 3072 pixel bytes";
  }
};

Format format_of(CifarVariant v) { return v == CifarVariant::Cifar10 ? Format{"CIFAR-10", 1} : Format{"CIFAR-100", 2}; }

// Validates existence and size; returns the number of records.
int64_t count_records(const std::string& path, const Format& fmt, const char* op) {
  std::error_code ec;
  QSLIM_CHECK(fs::is_regular_file(path, ec), op, ": ", path, ": no such file (expected a ", fmt.name,
              " binary file)");
  const uintmax_t size = fs::file_size(path, ec);
  QSLIM_CHECK(!ec, op, ": ", path, ": cannot read the file size (", ec.message(), ")");
  const auto rec = static_cast<uintmax_t>(fmt.record());
  QSLIM_CHECK(size % rec == 0, op, ": ", path, ": size ", size, " bytes is not a whole number of ", rec, "-byte ",
              fmt.name, " records (", fmt.record_desc(), "): found ", size / rec, " records and ", size % rec,
              " extra bytes");
  QSLIM_CHECK(size > 0, op, ": ", path, ": empty file, expected at least one ", rec, "-byte ", fmt.name, " record");
  return static_cast<int64_t>(size / rec);
}

// Reads the first n records of `path` into images (n * 3072 bytes) and labels (n bytes).
void read_records(const std::string& path, const Format& fmt, CifarLabels which, int64_t n, uint8_t* images,
                  uint8_t* labels, const char* op) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  QSLIM_CHECK(f != nullptr, op, ": ", path, ": cannot open (", std::strerror(errno), ")");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, &std::fclose);
  const int64_t rec = fmt.record();
  const int64_t chunk = 1024;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(chunk, n) * rec));
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t m = std::min(chunk, n - r0);
    const size_t want = static_cast<size_t>(m * rec);
    const size_t got = std::fread(buf.data(), 1, want, f);
    QSLIM_CHECK(got == want, op, ": ", path, ": read ", got, " of ", want, " bytes at record ", r0,
                " (the file changed or could not be read)");
    for (int64_t i = 0; i < m; ++i) {
      const uint8_t* p = buf.data() + i * rec;
      const int64_t r = r0 + i;
      if (fmt.label_bytes == 1) {
        QSLIM_CHECK(p[0] < 10, op, ": ", path, ": record ", r, " has label ", int(p[0]),
                    ", expected a CIFAR-10 class in 0..9");
        labels[r] = p[0];
      } else {
        QSLIM_CHECK(p[0] < 20, op, ": ", path, ": record ", r, " has coarse label ", int(p[0]),
                    ", expected a CIFAR-100 superclass in 0..19");
        QSLIM_CHECK(p[1] < 100, op, ": ", path, ": record ", r, " has fine label ", int(p[1]),
                    ", expected a CIFAR-100 class in 0..99");
        labels[r] = which == CifarLabels::Coarse ? p[0] : p[1];
      }
      std::memcpy(images + r * kPixels, p + fmt.label_bytes, kPixels);
    }
  }
}

// Reads `files` in order into one dataset, stopping after `limit` examples when limit >= 0.
std::shared_ptr<TensorDataset> load_files(const std::vector<std::string>& files, const Format& fmt, CifarLabels which,
                                          int64_t limit, const char* op) {
  std::vector<int64_t> take;
  int64_t total = 0;
  for (const std::string& path : files) {
    if (limit >= 0 && total >= limit) break;
    const int64_t n = count_records(path, fmt, op);
    take.push_back(limit >= 0 ? std::min(n, limit - total) : n);
    total += take.back();
  }
  Tensor images = Tensor::empty({total, 3, 32, 32}, DType::U8);
  Tensor labels = Tensor::empty({total}, DType::U8);
  int64_t at = 0;
  for (size_t i = 0; i < take.size(); ++i) {
    read_records(files[i], fmt, which, take[i], images.data<uint8_t>() + at * kPixels, labels.data<uint8_t>() + at,
                 op);
    at += take[i];
  }
  return std::make_shared<TensorDataset>(images, labels);
}

// `dir` itself when it holds `first`, else its archive subfolder when that does; errors name both.
std::string resolve_dir(const std::string& dir, const std::string& subfolder, const std::string& first,
                        const Format& fmt, const char* op) {
  std::error_code ec;
  const fs::path base(dir);
  if (fs::is_regular_file(base / first, ec)) return base.string();
  if (fs::is_regular_file(base / subfolder / first, ec)) return (base / subfolder).string();
  QSLIM_FAIL(op, ": missing file ", (base / first).string(), " (nor ", (base / subfolder / first).string(),
             "); expected the ", fmt.name, " binary version extracted there");
}

}  // namespace

CifarRecords read_cifar_file(const std::string& path, CifarVariant variant, CifarLabels labels, int64_t max_records) {
  const Format fmt = format_of(variant);
  const int64_t total = count_records(path, fmt, "read_cifar_file");
  const int64_t n = max_records >= 0 ? std::min(max_records, total) : total;
  CifarRecords out{Tensor::empty({n, 3, 32, 32}, DType::U8), Tensor::empty({n}, DType::U8)};
  if (n > 0)
    read_records(path, fmt, labels, n, out.images.data<uint8_t>(), out.labels.data<uint8_t>(), "read_cifar_file");
  return out;
}

std::shared_ptr<TensorDataset> load_cifar10(bool train, const std::string& dir, int64_t limit) {
  const Format fmt = format_of(CifarVariant::Cifar10);
  const char* op = "load_cifar10";
  const std::string first = train ? "data_batch_1.bin" : "test_batch.bin";
  const fs::path root = resolve_dir(dir, "cifar-10-batches-bin", first, fmt, op);
  std::vector<std::string> files;
  if (train)
    for (int i = 1; i <= 5; ++i) files.push_back((root / ("data_batch_" + std::to_string(i) + ".bin")).string());
  else
    files.push_back((root / first).string());
  return load_files(files, fmt, CifarLabels::Fine, limit, op);
}

std::shared_ptr<TensorDataset> load_cifar100(bool train, const std::string& dir, CifarLabels labels, int64_t limit) {
  const Format fmt = format_of(CifarVariant::Cifar100);
  const char* op = "load_cifar100";
  const std::string name = train ? "train.bin" : "test.bin";
  const fs::path root = resolve_dir(dir, "cifar-100-binary", name, fmt, op);
  return load_files({(root / name).string()}, fmt, labels, limit, op);
}

const std::array<const char*, 10>& cifar10_classes() {
  static const std::array<const char*, 10> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                     "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

const std::array<const char*, 100>& cifar100_fine_classes() {
  static const std::array<const char*, 100> names = {
      "apple",       "aquarium_fish", "baby",         "bear",       "beaver",     "bed",         "bee",
      "beetle",      "bicycle",       "bottle",       "bowl",       "boy",        "bridge",      "bus",
      "butterfly",   "camel",         "can",          "castle",     "caterpillar", "cattle",     "chair",
      "chimpanzee",  "clock",         "cloud",        "cockroach",  "couch",      "crab",        "crocodile",
      "cup",         "dinosaur",      "dolphin",      "elephant",   "flatfish",   "forest",      "fox",
      "girl",        "hamster",       "house",        "kangaroo",   "keyboard",   "lamp",        "lawn_mower",
      "leopard",     "lion",          "lizard",       "lobster",    "man",        "maple_tree",  "motorcycle",
      "mountain",    "mouse",         "mushroom",     "oak_tree",   "orange",     "orchid",      "otter",
      "palm_tree",   "pear",          "pickup_truck", "pine_tree",  "plain",      "plate",       "poppy",
      "porcupine",   "possum",        "rabbit",       "raccoon",    "ray",        "road",        "rocket",
      "rose",        "sea",           "seal",         "shark",      "shrew",      "skunk",       "skyscraper",
      "snail",       "snake",         "spider",       "squirrel",   "streetcar",  "sunflower",   "sweet_pepper",
      "table",       "tank",          "telephone",    "television", "tiger",      "tractor",     "train",
      "trout",       "tulip",         "turtle",       "wardrobe",   "whale",      "willow_tree", "wolf",
      "woman",       "worm"};
  return names;
}

const std::array<const char*, 20>& cifar100_coarse_classes() {
  static const std::array<const char*, 20> names = {"aquatic_mammals",
                                                     "fish",
                                                     "flowers",
                                                     "food_containers",
                                                     "fruit_and_vegetables",
                                                     "household_electrical_devices",
                                                     "household_furniture",
                                                     "insects",
                                                     "large_carnivores",
                                                     "large_man-made_outdoor_things",
                                                     "large_natural_outdoor_scenes",
                                                     "large_omnivores_and_herbivores",
                                                     "medium_mammals",
                                                     "non-insect_invertebrates",
                                                     "people",
                                                     "reptiles",
                                                     "small_mammals",
                                                     "trees",
                                                     "vehicles_1",
                                                     "vehicles_2"};
  return names;
}

}  // namespace qslim::data
