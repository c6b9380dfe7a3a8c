#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/temp_dir.h"
#include "core/factory.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "data/transforms.h"
#include "tests/support/test_support.h"

namespace qslim {
using qslim::testing::expect_error;

namespace {

namespace fs = std::filesystem;
using data::Batch;
using data::DataLoader;
using data::DataLoaderOptions;

// ---- helpers: temp directory and an independent IDX writer ----

// Temporary directories: qslim::testing::TempDir("test_data").
class TempDir : public qslim::testing::TempDir {
 public:
  TempDir() : qslim::testing::TempDir("test_data") {}
};

std::vector<uint8_t> idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    out.push_back(d >> 24);
    out.push_back((d >> 16) & 0xff);
    out.push_back((d >> 8) & 0xff);
    out.push_back(d & 0xff);
  }
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    if (!bytes.empty()) {
      ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), int(bytes.size()));
    }
    ASSERT_EQ(gzclose(f), Z_OK);
  } else {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
}

std::vector<uint8_t> pattern(size_t n, int mul = 7) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * mul + 3) % 256);
  return v;
}

// Runs f, expects a qslim::Error whose message contains every needle.
// ---- IDX ----

TEST(Idx, ReadsPlainAndGzipFiles) {
  TempDir dir;
  const auto pixels = pattern(3 * 4 * 5);
  const auto labels = std::vector<uint8_t>{9, 0, 4};
  for (bool gz : {false, true}) {
    const std::string img = dir.file(gz ? "img.gz" : "img"), lab = dir.file(gz ? "lab.gz" : "lab");
    write_file(img, idx_bytes(0x08, {3, 4, 5}, pixels), gz);
    write_file(lab, idx_bytes(0x08, {3}, labels), gz);
    Tensor t = data::read_idx_images(img);
    EXPECT_EQ(t.dtype(), DType::U8);
    EXPECT_EQ(t.shape(), (Shape{3, 4, 5}));
    EXPECT_EQ(t.to_vector<uint8_t>(), pixels);
    Tensor l = data::read_idx_labels(lab);
    EXPECT_EQ(l.shape(), (Shape{3}));
    EXPECT_EQ(l.to_vector<uint8_t>(), labels);
  }
}

TEST(Idx, MaxItemsReadsAPrefixAndReportsTheHeader) {
  TempDir dir;
  const auto pixels = pattern(4 * 2 * 2);
  write_file(dir.file("img.gz"), idx_bytes(0x08, {4, 2, 2}, pixels), true);
  Shape header;
  Tensor t = data::read_idx_images(dir.file("img.gz"), 2, &header);
  EXPECT_EQ(t.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(header, (Shape{4, 2, 2}));
  EXPECT_EQ(t.to_vector<uint8_t>(), std::vector<uint8_t>(pixels.begin(), pixels.begin() + 8));
  EXPECT_EQ(data::read_idx_images(dir.file("img.gz"), 10).shape(), (Shape{4, 2, 2}));
}

TEST(Idx, CorruptFilesNameTheFileAndTheProblem) {
  TempDir dir;
  const auto pixels = pattern(2 * 3 * 3);
  for (bool gz : {false, true}) {
    const std::string sfx = gz ? ".gz" : "";
    auto bytes = idx_bytes(0x08, {2, 3, 3}, pixels);

    auto bad_magic = bytes;
    bad_magic[1] = 0x01;
    write_file(dir.file("bad_magic" + sfx), bad_magic, gz);
    expect_error([&] { data::read_idx_images(dir.file("bad_magic" + sfx)); },
                 {"bad_magic" + sfx, "0x00000803", "0x00010803"});

    auto bad_type = bytes;
    bad_type[2] = 0x0D;  // float data
    write_file(dir.file("bad_type" + sfx), bad_type, gz);
    expect_error([&] { data::read_idx_images(dir.file("bad_type" + sfx)); }, {"bad_type" + sfx, "0x00000D03"});

    // A label file (1 dim) where images (3 dims) are expected.
    write_file(dir.file("labels_as_images" + sfx), idx_bytes(0x08, {18}, pixels), gz);
    expect_error([&] { data::read_idx_images(dir.file("labels_as_images" + sfx)); },
                 {"labels_as_images" + sfx, "expected 0x00000803", "found 0x00000801"});

    auto truncated = bytes;
    truncated.pop_back();
    write_file(dir.file("truncated" + sfx), truncated, gz);
    expect_error([&] { data::read_idx_images(dir.file("truncated" + sfx)); },
                 {"truncated" + sfx, "truncated", "18", "17"});

    auto trailing = bytes;
    trailing.push_back(0);
    write_file(dir.file("trailing" + sfx), trailing, gz);
    expect_error([&] { data::read_idx_images(dir.file("trailing" + sfx)); }, {"trailing" + sfx, "trailing data"});

    write_file(dir.file("short_header" + sfx), std::vector<uint8_t>(bytes.begin(), bytes.begin() + 6), gz);
    expect_error([&] { data::read_idx_images(dir.file("short_header" + sfx)); },
                 {"short_header" + sfx, "truncated header"});

    write_file(dir.file("empty" + sfx), {}, gz);
    expect_error([&] { data::read_idx_labels(dir.file("empty" + sfx)); }, {"empty" + sfx, "found 0 bytes"});
  }
  // A gzip stream cut in the middle.
  std::vector<uint8_t> big = idx_bytes(0x08, {50, 20, 20}, pattern(50 * 20 * 20, 131));
  write_file(dir.file("cut.gz"), big, true);
  const auto size = fs::file_size(dir.file("cut.gz"));
  fs::resize_file(dir.file("cut.gz"), size / 2);
  expect_error([&] { data::read_idx_images(dir.file("cut.gz")); }, {"cut.gz"});

  expect_error([&] { data::read_idx_images(dir.file("does_not_exist.gz")); },
               {"does_not_exist.gz", "no such file"});
}

// ---- Fashion-MNIST loader ----

void write_fashion(const TempDir& dir, const std::string& split, uint32_t n_img, uint32_t n_lab, uint32_t h = 28,
                   uint8_t bad_label = 0) {
  auto labels = std::vector<uint8_t>(n_lab);
  for (uint32_t i = 0; i < n_lab; ++i) labels[i] = i % 10;
  if (bad_label && n_lab > 1) labels[1] = bad_label;
  write_file(dir.file(split + "-images-idx3-ubyte.gz"), idx_bytes(0x08, {n_img, h, 28}, pattern(n_img * h * 28)),
             true);
  write_file(dir.file(split + "-labels-idx1-ubyte.gz"), idx_bytes(0x08, {n_lab}, labels), true);
}

TEST(FashionMnist, LoadsSplitsFromADirectory) {
  TempDir dir;
  write_fashion(dir, "train", 12, 12);
  write_fashion(dir, "t10k", 5, 5);
  auto train = data::load_fashion_mnist(true, dir.str());
  EXPECT_EQ(train->size(), 12);
  EXPECT_EQ(train->images().shape(), (Shape{12, 1, 28, 28}));
  EXPECT_EQ(train->get(3).label, 3);
  EXPECT_FLOAT_EQ(train->get(0).image.to_vector<float>()[1], pattern(2)[1] / 255.0f);
  EXPECT_EQ(data::load_fashion_mnist(false, dir.str())->size(), 5);
  EXPECT_EQ(data::load_fashion_mnist(true, dir.str(), 4)->size(), 4);
  EXPECT_STREQ(data::fashion_mnist_classes()[9], "Ankle boot");
}

TEST(FashionMnist, DirectoryFromEnvironmentAndPlainFiles) {
  TempDir dir;
  const auto labels = std::vector<uint8_t>{1, 2};
  write_file(dir.file("t10k-images-idx3-ubyte"), idx_bytes(0x08, {2, 28, 28}, pattern(2 * 28 * 28)), false);
  write_file(dir.file("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {2}, labels), false);
  const char* old = std::getenv("QSLIM_FASHION_MNIST");
  const std::string saved = old ? old : "";
  setenv("QSLIM_FASHION_MNIST", dir.str().c_str(), 1);
  EXPECT_EQ(data::fashion_mnist_dir(), dir.str());
  EXPECT_EQ(data::fashion_mnist_dir("/elsewhere"), "/elsewhere");
  auto ds = data::load_fashion_mnist(false);
  EXPECT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->get(1).label, 2);
  if (old)
    setenv("QSLIM_FASHION_MNIST", saved.c_str(), 1);
  else
    unsetenv("QSLIM_FASHION_MNIST");
  if (!old) {
    EXPECT_EQ(data::fashion_mnist_dir(), data::kFashionMnistDefaultDir);
  }
}

TEST(FashionMnist, InconsistentFilesNameTheFile) {
  {
    TempDir dir;
    write_fashion(dir, "train", 6, 5);
    expect_error([&] { data::load_fashion_mnist(true, dir.str()); },
                 {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "6 images", "5 labels"});
    // The header counts are compared even when only a prefix is read.
    expect_error([&] { data::load_fashion_mnist(true, dir.str(), 2); }, {"6 images", "5 labels"});
  }
  {
    TempDir dir;
    write_fashion(dir, "train", 3, 3, 27);
    expect_error([&] { data::load_fashion_mnist(true, dir.str()); },
                 {"train-images-idx3-ubyte.gz", "expected 28 x 28", "27 x 28"});
  }
  {
    TempDir dir;
    write_fashion(dir, "train", 3, 3, 28, 10);
    expect_error([&] { data::load_fashion_mnist(true, dir.str()); },
                 {"train-labels-idx1-ubyte.gz", "label 10", "index 1"});
  }
  {
    TempDir dir;
    write_fashion(dir, "train", 3, 3);
    expect_error([&] { data::load_fashion_mnist(false, dir.str()); }, {"t10k-images-idx3-ubyte.gz"});
    fs::remove(dir.file("train-labels-idx1-ubyte.gz"));
    expect_error([&] { data::load_fashion_mnist(true, dir.str()); }, {"train-labels-idx1-ubyte.gz"});
  }
}

TEST(FashionMnist, RealTestSet) {
  const std::string dir = testing::fashion_mnist_dir();
  ASSERT_FALSE(dir.empty()) << "Fashion-MNIST not found; set QSLIM_FASHION_MNIST";
  auto ds = data::load_fashion_mnist(false, dir);
  ASSERT_EQ(ds->size(), 10000);
  EXPECT_EQ(ds->images().shape(), (Shape{10000, 1, 28, 28}));
  std::vector<int> counts(10, 0);
  const int64_t* lab = ds->labels().data<int64_t>();
  for (int64_t i = 0; i < ds->size(); ++i) {
    ASSERT_GE(lab[i], 0);
    ASSERT_LT(lab[i], 10);
    ++counts[lab[i]];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], 1000) << "class " << c;

  // First label and first image row, read independently with zlib.
  gzFile f = gzopen((dir + "/t10k-labels-idx1-ubyte.gz").c_str(), "rb");
  ASSERT_NE(f, nullptr);
  unsigned char head[9];
  ASSERT_EQ(gzread(f, head, 9), 9);
  gzclose(f);
  EXPECT_EQ(lab[0], head[8]);
  f = gzopen((dir + "/t10k-images-idx3-ubyte.gz").c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::vector<unsigned char> img(16 + 784);
  ASSERT_EQ(gzread(f, img.data(), img.size()), int(img.size()));
  gzclose(f);
  const uint8_t* px = ds->images().data<uint8_t>();
  for (int i = 0; i < 784; ++i) ASSERT_EQ(px[i], img[16 + i]) << "pixel " << i;

  auto train = data::load_fashion_mnist(true, dir, 100);
  EXPECT_EQ(train->size(), 100);
}

// ---- datasets ----

// Example i is an image [1, 2, 3] filled with i, labelled i; optionally throws at one index.
class IndexDataset : public data::Dataset {
 public:
  explicit IndexDataset(int64_t n, int64_t throw_at = -1) : n_(n), throw_at_(throw_at) {}
  int64_t size() const override { return n_; }
  data::Example get(int64_t i) const override {
    check_index(i, "IndexDataset");
    QSLIM_CHECK(i != throw_at_, "IndexDataset: example ", i, " is broken");
    return {full({1, 2, 3}, static_cast<double>(i)), i};
  }

 private:
  int64_t n_, throw_at_;
};

TEST(Dataset, TensorDatasetScalesPixelsAndGathersBatches) {
  std::vector<uint8_t> px = pattern(4 * 2 * 3 * 3, 13);
  Tensor images = from_vector<uint8_t>(px, {4, 2, 3, 3});
  Tensor labels = from_vector<uint8_t>({3, 1, 4, 1}, {4});
  data::TensorDataset ds(images, labels);
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.image_shape(), (Shape{2, 3, 3}));
  data::Example e = ds.get(2);
  EXPECT_EQ(e.label, 4);
  EXPECT_EQ(e.image.shape(), (Shape{2, 3, 3}));
  for (int i = 0; i < 18; ++i) EXPECT_FLOAT_EQ(e.image.to_vector<float>()[i], px[2 * 18 + i] / 255.0f);
  Batch b = ds.get_batch({3, 0, 3});
  EXPECT_EQ(b.images.shape(), (Shape{3, 2, 3, 3}));
  EXPECT_EQ(b.labels.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 1}));
  auto v = b.images.to_vector<float>();
  for (int i = 0; i < 18; ++i) {
    EXPECT_FLOAT_EQ(v[i], px[3 * 18 + i] / 255.0f);
    EXPECT_FLOAT_EQ(v[18 + i], px[i] / 255.0f);
  }
  EXPECT_THROW(ds.get(4), Error);
  EXPECT_THROW(ds.get_batch({0, -1}), Error);
  EXPECT_THROW(data::TensorDataset(images, from_vector<uint8_t>({1, 2}, {2})), Error);
  EXPECT_THROW(data::TensorDataset(images.to(DType::F32), labels), Error);
}

TEST(Dataset, DefaultGetBatchStacksExamplesAndReusesFreeBuffers) {
  IndexDataset ds(10);
  Batch b;
  ds.get_batch({4, 7}, b);
  EXPECT_EQ(b.images.shape(), (Shape{2, 1, 2, 3}));
  EXPECT_EQ(b.labels.to_vector<int64_t>(), (std::vector<int64_t>{4, 7}));
  EXPECT_EQ(b.images.to_vector<float>()[6], 7.0f);
  const void* first = b.images.raw_data();
  ds.get_batch({1, 2}, b);
  EXPECT_EQ(b.images.raw_data(), first);  // nobody else held it: reused
  Tensor kept = b.images;
  ds.get_batch({5, 6}, b);
  EXPECT_NE(b.images.raw_data(), first);  // `kept` still holds it: fresh buffer
  EXPECT_EQ(kept.to_vector<float>()[0], 1.0f);
  Tensor view = b.images.view({-1});
  const void* second = b.images.raw_data();
  ds.get_batch({8, 9}, b);
  EXPECT_NE(b.images.raw_data(), second);  // a view shares the storage: fresh buffer
  EXPECT_EQ(view.to_vector<float>()[0], 5.0f);
}

// ---- transforms ----

Tensor random_batch(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return uniform(shape, 0.1, 1.0, DType::F32, &g);
}

TEST(Transforms, NormalizePerChannel) {
  Tensor x = random_batch({2, 3, 2, 2}, 1);
  auto in = x.to_vector<float>();
  Generator g;
  data::Normalize norm({0.5f, 0.25f, 0.0f}, {2.0f, 0.5f, 1.0f});
  Tensor y = norm(x, g);
  auto out = y.to_vector<float>();
  const float m[3] = {0.5f, 0.25f, 0.0f}, s[3] = {2.0f, 0.5f, 1.0f};
  for (size_t i = 0; i < in.size(); ++i) {
    const int c = (i / 4) % 3;
    EXPECT_FLOAT_EQ(out[i], (in[i] - m[c]) / s[c]);
  }
  EXPECT_THROW(data::Normalize({0.1f, 0.2f}, {1.0f}), Error);
  EXPECT_THROW(data::Normalize({0.1f}, {0.0f}), Error);
  Tensor four = random_batch({1, 4, 2, 2}, 2);
  EXPECT_THROW(norm(four, g), Error);
}

// Output image equals the input shifted so that out(y, x) = in(y + dy, x + dx), zero outside.
bool is_shift(const float* in, const float* out, int64_t C, int64_t H, int64_t W, int64_t oh, int64_t ow, int64_t dy,
              int64_t dx) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        const int64_t sy = y + dy, sx = x + dx;
        const float want = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? in[(c * H + sy) * W + sx] : 0.0f;
        if (out[(c * oh + y) * ow + x] != want) return false;
      }
  return true;
}

TEST(Transforms, RandomCropWithPaddingShiftsContent) {
  const int64_t B = 40, C = 2, H = 6, W = 5, P = 2;
  Tensor x = random_batch({B, C, H, W}, 3);
  auto in = x.to_vector<float>();
  Generator g(11);
  Tensor y = data::RandomCrop(H, W, P)(x.clone(), g);
  EXPECT_EQ(y.shape(), x.shape());
  auto out = y.to_vector<float>();
  std::set<std::pair<int64_t, int64_t>> shifts;
  for (int64_t b = 0; b < B; ++b) {
    int matches = 0;
    for (int64_t dy = -P; dy <= P; ++dy)
      for (int64_t dx = -P; dx <= P; ++dx)
        if (is_shift(&in[b * C * H * W], &out[b * C * H * W], C, H, W, H, W, dy, dx)) {
          ++matches;
          shifts.insert({dy, dx});
        }
    EXPECT_EQ(matches, 1) << "sample " << b;
  }
  EXPECT_GT(shifts.size(), 8u);  // positions vary across the batch

  // Same seed, same crops; a different seed, different crops.
  Generator g1(11), g2(12);
  EXPECT_TRUE(testing::AllClose(data::RandomCrop(H, W, P)(x.clone(), g1), y, 0, 0));
  EXPECT_FALSE(testing::AllClose(data::RandomCrop(H, W, P)(x.clone(), g2), y, 0, 0));

  // A smaller crop changes the shape and takes a window.
  Generator g3(5);
  Tensor z = data::RandomCrop(3, 4, 0)(x, g3);
  EXPECT_EQ(z.shape(), (Shape{B, C, 3, 4}));
  auto zo = z.to_vector<float>();
  for (int64_t b = 0; b < B; ++b) {
    bool found = false;
    for (int64_t dy = 0; dy <= H - 3 && !found; ++dy)
      for (int64_t dx = 0; dx <= W - 4 && !found; ++dx)
        found = is_shift(&in[b * C * H * W], &zo[b * C * 3 * 4], C, H, W, 3, 4, dy, dx);
    EXPECT_TRUE(found) << "sample " << b;
  }
  EXPECT_THROW(data::RandomCrop(8, 0)(x, g3), Error);
}

TEST(Transforms, HorizontalFlipMirrors) {
  const int64_t B = 64, C = 2, H = 3, W = 4;
  Tensor x = random_batch({B, C, H, W}, 4);
  auto in = x.to_vector<float>();
  Generator g(1);
  auto all = data::RandomHorizontalFlip(1.0)(x.clone(), g).to_vector<float>();
  for (int64_t r = 0; r < B * C * H; ++r)
    for (int64_t c = 0; c < W; ++c) ASSERT_EQ(all[r * W + c], in[r * W + (W - 1 - c)]);
  EXPECT_EQ(data::RandomHorizontalFlip(0.0)(x.clone(), g).to_vector<float>(), in);

  Generator g1(9), g2(9);
  auto half = data::RandomHorizontalFlip(0.5)(x.clone(), g1).to_vector<float>();
  EXPECT_EQ(data::RandomHorizontalFlip(0.5)(x.clone(), g2).to_vector<float>(), half);
  int flipped = 0;
  const int64_t per = C * H * W;
  for (int64_t b = 0; b < B; ++b) {
    const bool same = std::equal(half.begin() + b * per, half.begin() + (b + 1) * per, in.begin() + b * per);
    const bool mirrored = std::equal(half.begin() + b * per, half.begin() + (b + 1) * per, all.begin() + b * per);
    EXPECT_TRUE(same != mirrored) << "sample " << b;
    flipped += mirrored;
  }
  EXPECT_GT(flipped, 16);
  EXPECT_LT(flipped, 48);
}

TEST(Transforms, ComposeAppliesInOrderAndTakesSingleImages) {
  Tensor x = random_batch({3, 2, 2}, 5);  // one image [C, H, W]
  auto in = x.to_vector<float>();
  Generator g(0);
  data::Compose t({std::make_shared<data::RandomHorizontalFlip>(1.0),
                   std::make_shared<data::Normalize>(std::vector<float>{1.0f}, std::vector<float>{2.0f})});
  Tensor y = t(x.clone(), g);
  EXPECT_EQ(y.shape(), (Shape{3, 2, 2}));
  auto out = y.to_vector<float>();
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 2; ++c) EXPECT_FLOAT_EQ(out[r * 2 + c], (in[r * 2 + 1 - c] - 1.0f) / 2.0f);
}

TEST(Transforms, CenterCropCropsOrPadsAroundTheCentre) {
  const int64_t B = 2, C = 3, H = 5, W = 6;
  Tensor x = random_batch({B, C, H, W}, 6);
  auto in = x.to_vector<float>();
  Generator g;
  // {crop h, crop w, dy, dx}: origins round half to even like torchvision (1.5 -> 2, 0.5 -> 0); a
  // larger crop pads, the extra zero row/column going to the bottom/right.
  for (auto [oh, ow, dy, dx] : std::vector<std::array<int64_t, 4>>{
           {3, 4, 1, 1}, {2, 3, 2, 2}, {4, 4, 0, 1}, {8, 9, -1, -1}, {7, 4, -1, 1}, {1, 1, 2, 2}, {5, 5, 0, 0}}) {
    Tensor y = data::CenterCrop(oh, ow)(x, g);
    ASSERT_EQ(y.shape(), (Shape{B, C, oh, ow}));
    auto out = y.to_vector<float>();
    for (int64_t b = 0; b < B; ++b)
      EXPECT_TRUE(is_shift(&in[b * C * H * W], &out[b * C * oh * ow], C, H, W, oh, ow, dy, dx))
          << oh << " x " << ow << " sample " << b;
  }
  EXPECT_TRUE(data::CenterCrop(5, 6)(x, g).is_same(x));  // already that size
  Tensor one = data::CenterCrop(3)(x.select(0, 1).contiguous(), g);
  EXPECT_EQ(one.shape(), (Shape{C, 3, 3}));
  EXPECT_TRUE(is_shift(&in[C * H * W], one.data<float>(), C, H, W, 3, 3, 1, 2));  // round(1.5) = 2
  EXPECT_THROW(data::CenterCrop(0, 2), Error);
}

TEST(Transforms, GrayscaleUsesLumaWeights) {
  Tensor rgb = random_batch({2, 3, 2, 3}, 7);
  auto in = rgb.to_vector<float>();
  Generator g;
  auto gray = data::Grayscale(1)(rgb, g);
  ASSERT_EQ(gray.shape(), (Shape{2, 1, 2, 3}));
  auto out = gray.to_vector<float>();
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 6; ++i) {
      const float* p = &in[b * 18 + i];
      EXPECT_NEAR(out[b * 6 + i], 0.299 * p[0] + 0.587 * p[6] + 0.114 * p[12], 1e-6);
    }
  auto three = data::Grayscale(3)(rgb.clone(), g).to_vector<float>();
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 6; ++i) EXPECT_EQ(three[b * 18 + c * 6 + i], out[b * 6 + i]);
  auto rep = data::Grayscale(3)(gray, g);
  EXPECT_EQ(rep.shape(), (Shape{2, 3, 2, 3}));
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 6; ++i) EXPECT_EQ(rep.to_vector<float>()[b * 18 + c * 6 + i], out[b * 6 + i]);
  EXPECT_TRUE(data::Grayscale(1)(gray, g).is_same(gray));
  EXPECT_THROW(data::Grayscale(2), Error);
  EXPECT_THROW(data::Grayscale(1)(random_batch({1, 2, 2, 2}, 1), g), Error);
}

// ---- DataLoader ----

std::vector<std::vector<int64_t>> epoch_labels(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  for (Batch& b : loader) {
    EXPECT_EQ(b.images.size(0), b.labels.size(0));
    // IndexDataset: every pixel of an example equals its label.
    auto px = b.images.to_vector<float>();
    auto lab = b.labels.to_vector<int64_t>();
    for (size_t i = 0; i < lab.size(); ++i) EXPECT_EQ(px[i * 6], static_cast<float>(lab[i]));
    out.push_back(lab);
  }
  return out;
}

TEST(DataLoader, EveryIndexOncePerEpochAndReproducibleOrder) {
  auto ds = std::make_shared<IndexDataset>(103);
  for (int prefetch : {0, 3}) {
    DataLoader a(ds, {.batch_size = 10, .shuffle = true, .seed = 5, .prefetch = prefetch});
    DataLoader b(ds, {.batch_size = 10, .shuffle = true, .seed = 5, .prefetch = prefetch});
    EXPECT_EQ(a.size(), 11);
    EXPECT_EQ(a.dataset().size(), 103);
    EXPECT_EQ(a.options().prefetch, prefetch);
    auto e0 = epoch_labels(a), e1 = epoch_labels(a);
    ASSERT_EQ(e0.size(), 11u);
    EXPECT_EQ(e0.back().size(), 3u);
    for (const auto& epoch : {e0, e1}) {
      std::multiset<int64_t> seen;
      for (const auto& batch : epoch) seen.insert(batch.begin(), batch.end());
      EXPECT_EQ(seen.size(), 103u);
      for (int64_t i = 0; i < 103; ++i) EXPECT_EQ(seen.count(i), 1u) << i;
    }
    EXPECT_NE(e0, e1);                   // a new epoch reshuffles
    EXPECT_EQ(epoch_labels(b), e0);      // same seed, same order
    b.set_epoch(0);
    EXPECT_EQ(epoch_labels(b), e0);
    EXPECT_EQ(b.next_epoch(), 1);
    std::vector<int64_t> flat;
    for (const auto& batch : e1) flat.insert(flat.end(), batch.begin(), batch.end());
    EXPECT_EQ(flat, a.indices(1));
  }
  DataLoader c(ds, {.batch_size = 10, .shuffle = true, .seed = 6});
  EXPECT_NE(c.indices(0), DataLoader(ds, {.batch_size = 10, .shuffle = true, .seed = 5}).indices(0));
}

TEST(DataLoader, SequentialAndDropLast) {
  auto ds = std::make_shared<IndexDataset>(25);
  DataLoader seq(ds, {.batch_size = 10});
  auto e = epoch_labels(seq);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[2], (std::vector<int64_t>{20, 21, 22, 23, 24}));
  DataLoader drop(ds, {.batch_size = 10, .shuffle = true, .drop_last = true});
  EXPECT_EQ(drop.size(), 2);
  auto d = epoch_labels(drop);
  ASSERT_EQ(d.size(), 2u);
  std::set<int64_t> seen;
  for (const auto& b : d) {
    EXPECT_EQ(b.size(), 10u);
    seen.insert(b.begin(), b.end());
  }
  EXPECT_EQ(seen.size(), 20u);
  DataLoader none(std::make_shared<IndexDataset>(5), {.batch_size = 10, .drop_last = true});
  EXPECT_TRUE(epoch_labels(none).empty());
}

TEST(DataLoader, PrefetchOnAndOffGiveIdenticalAugmentedBatches) {
  Generator g(2);
  Tensor images = randint(0, 256, {50, 1, 6, 6}, DType::I64, &g).to(DType::U8);
  auto ds = std::make_shared<data::TensorDataset>(images, arange(50));
  auto aug = std::make_shared<data::Compose>(std::vector<data::TransformPtr>{
      std::make_shared<data::RandomCrop>(6, 2), std::make_shared<data::RandomHorizontalFlip>(0.5),
      std::make_shared<data::Normalize>(std::vector<float>{0.5f}, std::vector<float>{0.25f})});
  auto run = [&](int prefetch, int64_t epoch) {
    DataLoader loader(ds, {.batch_size = 8, .shuffle = true, .seed = 3, .transform = aug, .prefetch = prefetch});
    loader.set_epoch(epoch);
    std::vector<float> all;
    for (Batch& b : loader) {
      auto v = b.images.to_vector<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const auto sync = run(0, 4);
  EXPECT_EQ(run(2, 4), sync);
  EXPECT_EQ(run(4, 4), sync);
  EXPECT_NE(run(2, 5), sync);
}

TEST(DataLoader, EachBatchIsAugmentedWithItsOwnSeed) {
  Generator g(4);
  Tensor images = randint(0, 256, {30, 2, 5, 5}, DType::I64, &g).to(DType::U8);
  auto ds = std::make_shared<data::TensorDataset>(images, arange(30));
  auto aug = std::make_shared<data::Compose>(std::vector<data::TransformPtr>{
      std::make_shared<data::RandomCrop>(5, 1), std::make_shared<data::RandomHorizontalFlip>(0.5)});
  DataLoader loader(ds, {.batch_size = 7, .shuffle = true, .seed = 9, .transform = aug, .workers = 2});
  loader.set_epoch(3);
  const std::vector<int64_t> order = loader.indices(3);
  int64_t b = 0;
  for (Batch& batch : loader) {
    const int64_t begin = b * 7, end = std::min<int64_t>(begin + 7, 30);
    Batch plain = ds->get_batch(std::vector<int64_t>(order.begin() + begin, order.begin() + end));
    Generator gen(DataLoader::augmentation_seed(9, 3, b));
    EXPECT_TRUE(testing::AllClose(batch.images, (*aug)(plain.images, gen), 0, 0)) << "batch " << b;
    EXPECT_EQ(batch.labels.to_vector<int64_t>(), plain.labels.to_vector<int64_t>());
    ++b;
  }
  EXPECT_EQ(b, 5);
  std::set<uint64_t> seeds;
  for (uint64_t seed : {0, 1})
    for (int64_t e = 0; e < 4; ++e)
      for (int64_t k = 0; k < 4; ++k) seeds.insert(DataLoader::augmentation_seed(seed, e, k));
  EXPECT_EQ(seeds.size(), 32u);
}

// Delegates to a TensorDataset after sleeping a time that varies with the batch, so workers finish
// out of order; records how many batches were requested and the most requested at once.
class SlowDataset : public data::Dataset {
 public:
  explicit SlowDataset(std::shared_ptr<data::TensorDataset> inner, int max_sleep_us = 3000)
      : inner_(std::move(inner)), max_sleep_us_(max_sleep_us) {}
  int64_t size() const override { return inner_->size(); }
  data::Example get(int64_t i) const override { return inner_->get(i); }
  void get_batch(const std::vector<int64_t>& indices, Batch& out) const override {
    const int now = ++in_flight_;
    int seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    ++requested_;
    std::this_thread::sleep_for(std::chrono::microseconds((indices[0] * 7919) % (max_sleep_us_ + 1)));
    inner_->get_batch(indices, out);
    --in_flight_;
  }
  int max_in_flight() const { return max_in_flight_; }
  int requested() const { return requested_; }

 private:
  std::shared_ptr<data::TensorDataset> inner_;
  int max_sleep_us_;
  mutable std::atomic<int> in_flight_{0}, max_in_flight_{0}, requested_{0};
};

TEST(DataLoader, WorkerCountDoesNotChangeBatches) {
  Generator g(5);
  Tensor images = randint(0, 256, {61, 3, 6, 6}, DType::I64, &g).to(DType::U8);
  auto ds = std::make_shared<SlowDataset>(std::make_shared<data::TensorDataset>(images, arange(61)));
  auto aug = std::make_shared<data::Compose>(std::vector<data::TransformPtr>{
      std::make_shared<data::RandomCrop>(6, 2), std::make_shared<data::RandomHorizontalFlip>(0.5)});
  auto run = [&](int workers, int prefetch) {
    DataLoader loader(ds, {.batch_size = 4, .shuffle = true, .seed = 11, .transform = aug, .prefetch = prefetch,
                           .workers = workers});
    std::vector<std::vector<float>> images_out;
    std::vector<std::vector<int64_t>> labels_out;
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::multiset<int64_t> seen;
      for (Batch& b : loader) {
        images_out.push_back(b.images.to_vector<float>());
        labels_out.push_back(b.labels.to_vector<int64_t>());
        seen.insert(labels_out.back().begin(), labels_out.back().end());
      }
      EXPECT_EQ(seen.size(), 61u);
      for (int64_t i = 0; i < 61; ++i) EXPECT_EQ(seen.count(i), 1u) << "example " << i << " in epoch " << epoch;
    }
    return std::make_pair(images_out, labels_out);
  };
  const auto one = run(1, 2);
  EXPECT_EQ(one.first.size(), 32u);
  EXPECT_EQ(run(3, 2), one);
  EXPECT_GT(ds->max_in_flight(), 1);  // the workers did overlap
  EXPECT_EQ(run(4, 8), one);
  EXPECT_EQ(run(3, 0), one);  // prefetch 0: loaded in the consumer thread
}

TEST(DataLoader, WorkersStayWithinTheWindow) {
  Generator g(6);
  Tensor images = randint(0, 256, {80, 1, 2, 2}, DType::I64, &g).to(DType::U8);
  auto ds = std::make_shared<SlowDataset>(std::make_shared<data::TensorDataset>(images, arange(80)), 200);
  for (auto [workers, prefetch] : std::vector<std::pair<int, int>>{{3, 2}, {2, 5}, {1, 1}}) {
    const int window = std::max(workers, prefetch);
    const int before = ds->requested();
    DataLoader loader(ds, {.batch_size = 4, .prefetch = prefetch, .workers = workers});
    int consumed = 0;
    for (Batch& b : loader) {
      ++consumed;
      EXPECT_EQ(b.labels.to_vector<int64_t>()[0], (consumed - 1) * 4);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the workers run ahead
      EXPECT_LE(ds->requested() - before, consumed + window) << workers << " workers, prefetch " << prefetch;
    }
    EXPECT_EQ(consumed, 20);
    EXPECT_EQ(ds->requested() - before, 20);
  }
  EXPECT_THROW(DataLoader(ds, {.workers = 0}), Error);
  EXPECT_THROW(DataLoader(ds, {.workers = 65}), Error);
}

TEST(DataLoader, HeldBatchesAreNeverOverwritten) {
  Generator g(3);
  Tensor images = randint(0, 256, {64, 1, 4, 4}, DType::I64, &g).to(DType::U8);
  auto ds = std::make_shared<data::TensorDataset>(images, arange(64));
  for (auto [prefetch, workers] : std::vector<std::pair<int, int>>{{0, 1}, {2, 1}, {2, 3}}) {
    DataLoader loader(ds, {.batch_size = 4, .prefetch = prefetch, .workers = workers});
    std::vector<Batch> kept;
    std::set<const void*> buffers;
    int i = 0;
    for (Batch& b : loader) {
      buffers.insert(b.images.raw_data());
      if (i++ % 3 == 0) kept.push_back(b);
    }
    EXPECT_LT(buffers.size(), 16u) << "free batch buffers are recycled (prefetch " << prefetch << ")";
    for (size_t k = 0; k < kept.size(); ++k) {
      const int64_t first = static_cast<int64_t>(k) * 3 * 4;
      EXPECT_EQ(kept[k].labels.to_vector<int64_t>()[0], first);
      auto v = kept[k].images.to_vector<float>();
      EXPECT_FLOAT_EQ(v[5], images.data<uint8_t>()[first * 16 + 5] / 255.0f);
    }
  }
}

TEST(DataLoader, AbandoningAnEpochStopsCleanly) {
  auto ds = std::make_shared<IndexDataset>(1000);
  for (int workers : {1, 3}) {
    DataLoader loader(ds, {.batch_size = 2, .shuffle = true, .seed = 1, .prefetch = 2, .workers = workers});
    for (int round = 0; round < 20; ++round) {
      int n = 0;
      for (Batch& b : loader) {
        (void)b;
        if (++n == 3) break;
      }
      EXPECT_EQ(n, 3);
    }
    auto it = loader.begin();  // dropped without iterating
    EXPECT_NE(it, loader.end());
  }
}

TEST(DataLoader, WorkerErrorsReachTheConsumer) {
  auto ds = std::make_shared<IndexDataset>(40, 25);
  for (auto [prefetch, workers] : std::vector<std::pair<int, int>>{{0, 1}, {2, 1}, {2, 3}, {6, 4}}) {
    DataLoader loader(ds, {.batch_size = 4, .prefetch = prefetch, .workers = workers});
    int batches = 0;
    expect_error(
        [&] {
          for (Batch& b : loader) {
            (void)b;
            ++batches;
          }
        },
        {"example 25 is broken"});
    EXPECT_EQ(batches, 6);  // batches 0..5 hold examples 0..23; batch 6 fails
  }
  auto first_bad = std::make_shared<IndexDataset>(40, 0);
  for (int workers : {1, 3}) {
    DataLoader loader(first_bad, {.batch_size = 4, .prefetch = 2, .workers = workers});
    expect_error([&] { loader.begin(); }, {"example 0 is broken"});
  }
  EXPECT_THROW(DataLoader(ds, {.batch_size = 0}), Error);
}

}  // namespace
}  // namespace qslim
