#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "autograd/ops_arith.h"
#include "core/factory.h"
#include "data/dataloader.h"
#include "data/image_folder.h"
#include "data/image_ops.h"
#include "data/transforms.h"
#include "tests/support/test_support.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace qslim {
using qslim::testing::expect_error;

namespace {

namespace fs = std::filesystem;
using data::ImageFolderDataset;
using data::ImageFolderOptions;

// Temporary directories: qslim::testing::TempDir("test_image_folder").
class TempDir : public qslim::testing::TempDir {
 public:
  TempDir() : qslim::testing::TempDir("test_image_folder") {}
};

// An interleaved test image [h, w, comps]. Smooth images survive JPEG nearly unchanged.
struct Image {
  int h = 0, w = 0, comps = 0;
  std::vector<uint8_t> px;
  uint8_t at(int y, int x, int c) const { return px[(y * w + x) * comps + c]; }
};

Image make_image(int h, int w, int comps, int seed, bool smooth = false) {
  Image im{h, w, comps, std::vector<uint8_t>(static_cast<size_t>(h * w * comps))};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < comps; ++c)
        im.px[(y * w + x) * comps + c] =
            smooth ? static_cast<uint8_t>(30 + 6 * x + 5 * y + 40 * c + seed)
                   : static_cast<uint8_t>((x * 29 + y * 53 + c * 101 + seed * 17 + x * y * 7) % 256);
  return im;
}

void write_image(const std::string& path, const Image& im) {
  fs::create_directories(fs::path(path).parent_path());
  const std::string ext = fs::path(path).extension().string();
  int ok = 0;
  if (ext == ".png")
    ok = stbi_write_png(path.c_str(), im.w, im.h, im.comps, im.px.data(), im.w * im.comps);
  else if (ext == ".bmp")
    ok = stbi_write_bmp(path.c_str(), im.w, im.h, im.comps, im.px.data());
  else
    ok = stbi_write_jpg(path.c_str(), im.w, im.h, im.comps, im.px.data(), 100);
  ASSERT_NE(ok, 0) << path;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Expected planes [channels, h, w] of an image: alpha dropped, gray replicated, RGB to gray with
// PIL's integer luma.
std::vector<double> expected_planes(const Image& im, int channels) {
  const int n = im.h * im.w;
  std::vector<double> out(static_cast<size_t>(channels * n));
  for (int i = 0; i < n; ++i) {
    const uint8_t* p = &im.px[i * im.comps];
    const bool color = im.comps >= 3;
    if (channels == 1) {
      out[i] = color ? ((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 32768) >> 16) : p[0];
    } else {
      for (int c = 0; c < 3; ++c) out[c * n + i] = color ? p[c] : p[0];
    }
  }
  return out;
}

// Reference bilinear resampling: every input pixel weighted by a triangle of half-width
// max(scale, 1) (antialias) or 1 around the output pixel's centre, weights normalised.
std::vector<std::vector<std::pair<int, double>>> ref_weights(int in, int out, bool antialias) {
  const double scale = double(in) / out, fs = antialias ? std::max(scale, 1.0) : 1.0;
  std::vector<std::vector<std::pair<int, double>>> w(out);
  for (int o = 0; o < out; ++o) {
    const double center = (o + 0.5) * scale;
    double total = 0;
    for (int j = 0; j < in; ++j) {
      const double k = 1.0 - std::abs((j + 0.5 - center) / fs);
      if (k > 0) {
        w[o].push_back({j, k});
        total += k;
      }
    }
    for (auto& [j, k] : w[o]) k /= total;
  }
  return w;
}

std::vector<double> ref_resize(const std::vector<double>& src, int planes, int h, int w, int oh, int ow,
                               bool antialias) {
  const auto wy = ref_weights(h, oh, antialias), wx = ref_weights(w, ow, antialias);
  std::vector<double> out(static_cast<size_t>(planes * oh * ow), 0.0);
  for (int p = 0; p < planes; ++p)
    for (int y = 0; y < oh; ++y)
      for (int x = 0; x < ow; ++x) {
        double v = 0;
        for (auto [j, ky] : wy[y])
          for (auto [i, kx] : wx[x]) v += ky * kx * src[(p * h + j) * w + i];
        out[(p * oh + y) * ow + x] = v;
      }
  return out;
}

// u8 results equal the reference rounded half up; within one step only where the reference is
// within 1e-3 of a tie (f32 vs f64 arithmetic may round either way there).
void expect_u8_equal(const Tensor& got, const std::vector<double>& ref, const std::string& what) {
  const auto g = got.to_vector<int64_t>();
  ASSERT_EQ(g.size(), ref.size()) << what;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double want = std::floor(ref[i] + 0.5);
    const bool tie = std::abs(ref[i] - std::floor(ref[i]) - 0.5) < 1e-3;
    if (tie)
      ASSERT_LE(std::abs(g[i] - want), 1.0) << what << " element " << i;
    else
      ASSERT_EQ(g[i], want) << what << " element " << i << " (reference " << ref[i] << ")";
  }
}

// ---- bilinear resampling ----

TEST(ImageResize, PlanesMatchTheReference) {
  Generator gen(1);
  for (bool antialias : {true, false})
    for (auto [h, w, oh, ow] : std::vector<std::array<int, 4>>{{6, 8, 3, 4},   {6, 8, 12, 16}, {7, 5, 3, 9},
                                                                {5, 9, 5, 2},  {1, 6, 4, 3},   {13, 11, 4, 4},
                                                                {4, 4, 4, 4},  {3, 3, 1, 1}}) {
      const std::string what = std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" +
                               std::to_string(ow) + (antialias ? " antialias" : "");
      Tensor x = uniform({2, 3, h, w}, -1.0, 2.0, DType::F32, &gen);
      const auto xin = x.to_vector<double>();
      const auto ref = ref_resize(xin, 6, h, w, oh, ow, antialias);
      Tensor y = empty({2, 3, oh, ow});
      data::resize_planes(x.data<float>(), 6, h, w, y.data<float>(), oh, ow, antialias);
      const auto got = y.to_vector<double>();
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-5) << what << " element " << i;

      // The Resize transform on a batch and on a single image.
      Generator g;
      Tensor t = data::Resize(oh, ow, antialias)(x, g);
      EXPECT_EQ(t.shape(), (Shape{2, 3, oh, ow}));
      EXPECT_TRUE(testing::AllClose(t, y, 0, 0)) << what;
      Tensor one = data::Resize(oh, ow, antialias)(x.select(0, 1).contiguous(), g);
      EXPECT_EQ(one.shape(), (Shape{3, oh, ow}));
      EXPECT_TRUE(testing::AllClose(one, y.select(0, 1), 0, 0)) << what;

      // u8 planes: rounded.
      Tensor q = randint(0, 256, {3, h, w}, DType::I64, &gen).to(DType::U8);
      Tensor qo = empty({3, oh, ow}, DType::U8);
      data::resize_planes(q.data<uint8_t>(), 3, h, w, qo.data<uint8_t>(), oh, ow, antialias);
      expect_u8_equal(qo, ref_resize(q.to_vector<double>(), 3, h, w, oh, ow, antialias), what + " u8");
    }
  // Antialiasing matters when shrinking: a 1-pixel checkerboard halves to flat grey only with it.
  Tensor board = empty({1, 1, 8, 8});
  for (int i = 0; i < 64; ++i) board.data<float>()[i] = ((i / 8 + i % 8) % 2) ? 1.0f : 0.0f;
  Generator g;
  auto smooth = data::Resize(3, 3, true)(board, g).to_vector<float>();
  for (float v : smooth) EXPECT_NEAR(v, 0.5f, 0.1f);
  EXPECT_THROW(data::Resize(0, 3), Error);
  EXPECT_THROW(data::Resize(2)(board.to(DType::F64), g), Error);
}

// ---- folders ----

// root/ant: e.jpg f.JPEG (RGB, smooth); root/cat: a.png (RGB) b.bmp (RGB); root/dog: c.png (gray),
// sub/d.png (RGBA), notes.txt; plus ignored entries. All images are 6 x 8.
struct Folder {
  TempDir dir;
  std::vector<std::string> names;  // relative paths in index order
  std::vector<Image> images;
  std::vector<int64_t> labels;
  std::vector<bool> lossy;

  Folder() {
    add("ant/e.jpg", make_image(6, 8, 3, 1, true), 0, true);
    add("ant/f.JPEG", make_image(6, 8, 3, 2, true), 0, true);
    add("cat/a.png", make_image(6, 8, 3, 3), 1, false);
    add("cat/b.bmp", make_image(6, 8, 3, 4), 1, false);
    add("dog/c.png", make_image(6, 8, 1, 5), 2, false);
    add("dog/sub/d.png", make_image(6, 8, 4, 6), 2, false);
    write_bytes(dir.file("dog/notes.txt"), {'h', 'i'});
    write_image(dir.file("dog/.hidden.png"), make_image(2, 2, 3, 0));
    write_image(dir.file(".git/x.png"), make_image(2, 2, 3, 0));
    write_bytes(dir.file("readme.txt"), {'h', 'i'});
  }
  void add(const std::string& name, const Image& im, int64_t label, bool is_lossy) {
    write_image(dir.file(name), im);
    names.push_back(name);
    images.push_back(im);
    labels.push_back(label);
    lossy.push_back(is_lossy);
  }
};

void expect_pixels(const Tensor& got, const Image& im, int channels, bool lossy, const std::string& what) {
  ASSERT_EQ(got.shape(), (Shape{channels, im.h, im.w})) << what;
  const auto want = expected_planes(im, channels);
  if (!lossy) {
    expect_u8_equal(got, want, what);
    return;
  }
  const auto g = got.to_vector<double>();
  double max_err = 0, sum_err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_err = std::max(max_err, std::abs(g[i] - want[i]));
    sum_err += std::abs(g[i] - want[i]);
  }
  EXPECT_LE(max_err, 12) << what;
  EXPECT_LE(sum_err / want.size(), 3) << what;
}

TEST(ImageFolder, ClassesLabelsAndPixels) {
  Folder f;
  for (int channels : {3, 1}) {
    ImageFolderDataset ds(f.dir.str(), {.channels = channels});
    EXPECT_EQ(ds.classes(), (std::vector<std::string>{"ant", "cat", "dog"}));
    ASSERT_EQ(ds.size(), 6);
    EXPECT_EQ(ds.labels(), f.labels);
    for (int64_t i = 0; i < ds.size(); ++i) {
      EXPECT_EQ(ds.files()[i], f.dir.file(f.names[i]));
      const std::string what = f.names[i] + " as " + std::to_string(channels) + " channels";
      Tensor u8 = ds.decode(i);
      EXPECT_EQ(u8.dtype(), DType::U8);
      expect_pixels(u8, f.images[i], channels, f.lossy[i], what);
      data::Example e = ds.get(i);
      EXPECT_EQ(e.label, f.labels[i]);
      EXPECT_TRUE(testing::AllClose(e.image, u8.to(DType::F32) * (1.0 / 255.0), 1e-6, 1e-7)) << what;
    }
  }
}

TEST(ImageFolder, ResizeAfterChannelConversion) {
  Folder f;
  for (bool antialias : {true, false})
    for (int channels : {3, 1})
      for (auto [oh, ow] : std::vector<std::pair<int, int>>{{3, 4}, {12, 16}, {5, 3}}) {
        ImageFolderDataset ds(f.dir.str(), {.channels = channels, .height = oh, .width = ow, .antialias = antialias});
        for (int64_t i = 2; i < ds.size(); ++i) {  // the lossless ones
          const std::string what = f.names[i] + " " + std::to_string(channels) + "ch to " + std::to_string(oh) +
                                   "x" + std::to_string(ow);
          Tensor got = ds.decode(i);
          ASSERT_EQ(got.shape(), (Shape{channels, oh, ow})) << what;
          const Image& im = f.images[i];
          expect_u8_equal(got, ref_resize(expected_planes(im, channels), channels, im.h, im.w, oh, ow, antialias),
                          what);
        }
        // JPEG: close to the resized original.
        Tensor jpg = ds.decode(0);
        const Image& im = f.images[0];
        const auto ref = ref_resize(expected_planes(im, channels), channels, im.h, im.w, oh, ow, antialias);
        const auto g = jpg.to_vector<double>();
        for (size_t k = 0; k < ref.size(); ++k) EXPECT_NEAR(g[k], ref[k], 12) << "jpeg element " << k;
      }
}

TEST(ImageFolder, EagerAndLazyAgree) {
  Folder f;
  ImageFolderDataset lazy(f.dir.str(), {.channels = 3, .height = 5, .width = 7});
  auto eager = lazy.load_all();
  EXPECT_EQ(eager->images().shape(), (Shape{6, 3, 5, 7}));
  EXPECT_EQ(eager->labels().to_vector<int64_t>(), f.labels);
  for (int64_t i = 0; i < 6; ++i) EXPECT_TRUE(testing::AllClose(eager->images().select(0, i), lazy.decode(i), 0, 0));
  const std::vector<int64_t> idx = {5, 0, 3, 3};
  data::Batch a = lazy.get_batch(idx), b = eager->get_batch(idx);
  EXPECT_TRUE(testing::AllClose(a.images, b.images, 0, 0));
  EXPECT_EQ(a.labels.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 1, 1}));

  // Through DataLoaders with several workers, the lazy folder gives the eager batches.
  auto lazy_ptr = std::make_shared<ImageFolderDataset>(lazy);
  data::DataLoader l1(lazy_ptr, {.batch_size = 4, .shuffle = true, .seed = 2, .workers = 3});
  data::DataLoader l2(eager, {.batch_size = 4, .shuffle = true, .seed = 2, .workers = 1});
  std::vector<std::vector<float>> x1, x2;
  for (data::Batch& bt : l1) x1.push_back(bt.images.to_vector<float>());
  for (data::Batch& bt : l2) x2.push_back(bt.images.to_vector<float>());
  EXPECT_EQ(x1.size(), 2u);
  EXPECT_EQ(x1, x2);

  // Without a resize the decoded size is kept.
  ImageFolderDataset native(f.dir.str(), {.channels = 1});
  EXPECT_EQ(native.load_all()->images().shape(), (Shape{6, 1, 6, 8}));
}

TEST(ImageFolder, ImagesOfDifferentSizesNeedAResize) {
  TempDir dir;
  write_image(dir.file("a/1.png"), make_image(6, 8, 3, 1));
  write_image(dir.file("a/2.png"), make_image(6, 8, 3, 2));
  write_image(dir.file("b/3.png"), make_image(5, 8, 3, 3));
  ImageFolderDataset ds(dir.str());
  EXPECT_EQ(ds.get(2).image.shape(), (Shape{3, 5, 8}));  // single items are fine
  expect_error([&] { ds.load_all(); }, {dir.file("b/3.png"), "8 x 5", dir.file("a/1.png"), "8 x 6", "resize"});
  expect_error([&] { ds.get_batch({0, 2}); }, {dir.file("b/3.png"), "8 x 5", dir.file("a/1.png"), "resize"});
  ImageFolderDataset resized(dir.str(), {.height = 4, .width = 4});
  EXPECT_EQ(resized.load_all()->images().shape(), (Shape{3, 3, 4, 4}));
}

TEST(ImageFolder, UndecodableFilesNameTheFileAndTheReason) {
  TempDir dir;
  write_image(dir.file("a/good.png"), make_image(4, 4, 3, 1));
  std::vector<uint8_t> noise(200);
  Generator gen(3);
  for (auto& b : noise) b = static_cast<uint8_t>(gen.next_u64());
  write_bytes(dir.file("b/bad.png"), noise);
  write_image(dir.file("b/cut.png"), make_image(16, 16, 3, 2));
  fs::resize_file(dir.file("b/cut.png"), fs::file_size(dir.file("b/cut.png")) / 2);
  for (int k = 0; k < 8; ++k) write_image(dir.file("c/" + std::to_string(k) + ".png"), make_image(4, 4, 3, k));
  ImageFolderDataset ds(dir.str());
  ASSERT_EQ(ds.files()[1], dir.file("b/bad.png"));
  expect_error([&] { ds.decode(1); }, {dir.file("b/bad.png"), "cannot decode", "unknown image type"});
  expect_error([&] { ds.get(2); }, {dir.file("b/cut.png"), "cannot decode"});
  expect_error([&] { ds.get_batch({0, 2}); }, {dir.file("b/cut.png"), "cannot decode"});
  // The eager load reports the first bad file in index order.
  expect_error([&] { ds.load_all(); }, {dir.file("b/bad.png"), "cannot decode"});
  EXPECT_EQ(ds.decode(0).shape(), (Shape{3, 4, 4}));
}

TEST(ImageFolder, BadLayoutsAndOptions) {
  {
    TempDir dir;
    write_image(dir.file("a/1.png"), make_image(4, 4, 3, 1));
    fs::create_directories(dir.file("empty"));
    write_bytes(dir.file("empty/notes.txt"), {'x'});
    expect_error([&] { ImageFolderDataset ds(dir.str()); }, {"class folder", dir.file("empty"), "no images"});
  }
  {
    TempDir dir;
    write_bytes(dir.file("loose.png"), {'x'});
    expect_error([&] { ImageFolderDataset ds(dir.str()); }, {"root", dir.str(), "no class folders"});
    expect_error([&] { ImageFolderDataset ds(dir.file("missing")); }, {dir.file("missing"), "not a directory"});
  }
  TempDir dir;
  write_image(dir.file("a/1.png"), make_image(4, 4, 3, 1));
  expect_error([&] { ImageFolderDataset ds(dir.str(), {.channels = 2}); }, {"channels", "got 2"});
  expect_error([&] { ImageFolderDataset ds(dir.str(), {.height = 4}); }, {"height and width", "4 x 0"});
  ImageFolderDataset ds(dir.str());
  EXPECT_THROW(ds.get(1), Error);
  EXPECT_THROW(ds.get_batch({}), Error);
}

// ---- channel conversion ----

TEST(ImageOps, InterleavedToPlanes) {
  for (int comps : {1, 2, 3, 4})
    for (int channels : {1, 3}) {
      const Image im = make_image(3, 5, comps, comps);
      Tensor out = empty({channels, 3, 5}, DType::U8);
      data::interleaved_to_planes(im.px.data(), 3, 5, comps, out.data<uint8_t>(), channels);
      expect_u8_equal(out, expected_planes(im, channels), std::to_string(comps) + " -> " + std::to_string(channels));
    }
  EXPECT_EQ(data::luma_u8(255, 255, 255), 255);
  EXPECT_EQ(data::luma_u8(255, 0, 0), 76);  // 0.299 * 255 = 76.2
  EXPECT_EQ(data::luma_u8(0, 255, 0), 150);  // 0.587 * 255 = 149.7
  std::vector<uint8_t> px(12), dst(12);
  EXPECT_THROW(data::interleaved_to_planes(px.data(), 2, 2, 5, dst.data(), 3), Error);
  EXPECT_THROW(data::interleaved_to_planes(px.data(), 2, 2, 3, dst.data(), 2), Error);
}

}  // namespace
}  // namespace qslim
