#include "data/image_folder.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <utility>

#include "core/factory.h"
#include "core/parallel.h"
#include "data/image_ops.h"

// stb_image, private to this file (static functions), only the decoders the folder accepts; files
// are read here so that stb needs no stdio.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace qslim::data {

namespace {

namespace fs = std::filesystem;

bool hidden(const fs::path& p) { return !p.filename().empty() && p.filename().string()[0] == '.'; }

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// Image files under `dir` (recursively), sorted by folder then name as torchvision sorts os.walk.
std::vector<std::string> find_images(const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> found;
  const auto opts = fs::directory_options::follow_directory_symlink | fs::directory_options::skip_permission_denied;
  for (auto it = fs::recursive_directory_iterator(dir, opts); it != fs::recursive_directory_iterator(); ++it) {
    const fs::path& p = it->path();
    std::error_code ec;
    if (hidden(p)) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && is_image_file(p)) found.emplace_back(p.parent_path().string(), p.filename().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  out.reserve(found.size());
  for (auto& [folder, name] : found) out.push_back((fs::path(folder) / name).string());
  return out;
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  QSLIM_CHECK(f.good(), "ImageFolderDataset: cannot open ", path, " (", std::strerror(errno), ")");
  const std::streamoff size = f.tellg();
  QSLIM_CHECK(size >= 0 && size <= std::numeric_limits<int>::max(), "ImageFolderDataset: ", path, " has size ", size,
              " bytes, expected at most ", std::numeric_limits<int>::max());
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(bytes.data()), size);
  QSLIM_CHECK(f.good() || size == 0, "ImageFolderDataset: cannot read ", path, " (", std::strerror(errno), ")");
  return bytes;
}

// Decoded, converted and resized pixels of one file: u8 planes [c, h, w].
struct Pixels {
  std::vector<uint8_t> data;
  int64_t c = 0, h = 0, w = 0;
};

Pixels load_pixels(const std::string& path, const ImageFolderOptions& o) {
  const std::vector<unsigned char> bytes = read_bytes(path);
  int w = 0, h = 0, comp = 0;
  stbi_uc* raw = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp, 0);
  QSLIM_CHECK(raw != nullptr, "ImageFolderDataset: cannot decode ", path, ": ", stbi_failure_reason());
  std::unique_ptr<stbi_uc, void (*)(void*)> guard(raw, &stbi_image_free);
  const int64_t oc = o.channels;
  const bool resize = o.height > 0 && (o.height != h || o.width != w);
  Pixels px;
  px.c = oc;
  px.h = resize ? o.height : h;
  px.w = resize ? o.width : w;
  // Gray to RGB commutes with resizing, so resize the single plane and replicate it.
  const bool replicate_after = resize && comp <= 2 && oc == 3;
  const int64_t planes = replicate_after ? 1 : oc;
  std::vector<uint8_t> converted(static_cast<size_t>(planes * h * w));
  interleaved_to_planes(raw, h, w, comp, converted.data(), static_cast<int>(planes));
  if (!resize) {
    px.data = std::move(converted);
    return px;
  }
  const int64_t out_plane = px.h * px.w;
  px.data.resize(static_cast<size_t>(oc * out_plane));
  resize_planes(converted.data(), planes, h, w, px.data.data(), px.h, px.w, o.antialias);
  for (int64_t c = planes; c < oc; ++c) std::copy_n(px.data.data(), out_plane, px.data.data() + c * out_plane);
  return px;
}

}  // namespace

ImageFolderDataset::ImageFolderDataset(const std::string& root, ImageFolderOptions options)
    : root_(root), opts_(options) {
  const char* op = "ImageFolderDataset";
  QSLIM_CHECK(opts_.channels == 1 || opts_.channels == 3, op, ": channels must be 1 (gray) or 3 (RGB), got ",
              opts_.channels);
  QSLIM_CHECK((opts_.height == 0 && opts_.width == 0) || (opts_.height > 0 && opts_.width > 0), op,
              ": height and width must both be > 0 (resize) or both 0 (keep the size), got ", opts_.height, " x ",
              opts_.width);
  std::error_code ec;
  QSLIM_CHECK(fs::is_directory(root_, ec), op, ": root ", root_, " is not a directory");
  try {
    scan();
  } catch (const fs::filesystem_error& e) {
    QSLIM_FAIL(op, ": cannot list ", e.path1().string(), " under root ", root_, " (", e.code().message(), ")");
  }
}

void ImageFolderDataset::scan() {
  const char* op = "ImageFolderDataset";
  std::error_code ec;
  std::vector<fs::path> class_dirs;
  for (const fs::directory_entry& e : fs::directory_iterator(root_))
    if (!hidden(e.path()) && e.is_directory(ec)) class_dirs.push_back(e.path());
  std::sort(class_dirs.begin(), class_dirs.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  QSLIM_CHECK(!class_dirs.empty(), op, ": root ", root_,
              " holds no class folders; expected root/<class_name>/<images (.png, .jpg, .jpeg, .bmp)>");
  for (const fs::path& dir : class_dirs) {
    std::vector<std::string> images = find_images(dir);
    QSLIM_CHECK(!images.empty(), op, ": class folder ", dir.string(), " holds no images (.png, .jpg, .jpeg, .bmp)");
    const auto label = static_cast<int64_t>(classes_.size());
    classes_.push_back(dir.filename().string());
    for (std::string& f : images) {
      files_.push_back(std::move(f));
      labels_.push_back(label);
    }
  }
}

Tensor ImageFolderDataset::decode(int64_t index) const {
  check_index(index, "ImageFolderDataset::decode");
  Pixels px = load_pixels(files_[index], opts_);
  Tensor t = Tensor::empty({px.c, px.h, px.w}, DType::U8);
  std::copy(px.data.begin(), px.data.end(), t.data<uint8_t>());
  return t;
}

Example ImageFolderDataset::get(int64_t index) const {
  check_index(index, "ImageFolderDataset::get");
  Pixels px = load_pixels(files_[index], opts_);
  Tensor t = Tensor::empty({px.c, px.h, px.w}, DType::F32);
  float* d = t.data<float>();
  for (size_t i = 0; i < px.data.size(); ++i) d[i] = static_cast<float>(px.data[i]) * (1.0f / 255.0f);
  return {t, labels_[index]};
}

void ImageFolderDataset::get_batch(const std::vector<int64_t>& indices, Batch& out) const {
  const int64_t n = static_cast<int64_t>(indices.size());
  QSLIM_CHECK(n > 0, "ImageFolderDataset::get_batch: no indices given");
  for (int64_t idx : indices) check_index(idx, "ImageFolderDataset::get_batch");
  Pixels first = load_pixels(files_[indices[0]], opts_);
  const int64_t h = first.h, w = first.w, per = first.c * h * w;
  ensure_buffer(out.images, {n, first.c, h, w}, DType::F32);
  ensure_buffer(out.labels, {n}, DType::I64);
  float* dst = out.images.data<float>();
  int64_t* lab = out.labels.data<int64_t>();
  for (int64_t b = 0; b < n; ++b) {
    Pixels px = b == 0 ? std::move(first) : load_pixels(files_[indices[b]], opts_);
    QSLIM_CHECK(px.h == h && px.w == w, "ImageFolderDataset::get_batch: ", files_[indices[b]], " is ", px.w, " x ",
                px.h, " but ", files_[indices[0]], " is ", w, " x ", h, "; set height and width to resize to one size");
    float* d = dst + b * per;
    for (int64_t i = 0; i < per; ++i) d[i] = static_cast<float>(px.data[i]) * (1.0f / 255.0f);
    lab[b] = labels_[indices[b]];
  }
}

std::shared_ptr<TensorDataset> ImageFolderDataset::load_all() const {
  const int64_t n = size();
  Pixels first = load_pixels(files_[0], opts_);
  const int64_t per = first.c * first.h * first.w;
  Tensor images = Tensor::empty({n, first.c, first.h, first.w}, DType::U8);
  uint8_t* dst = images.data<uint8_t>();
  std::copy(first.data.begin(), first.data.end(), dst);
  // Exceptions must not leave an OpenMP region: keep each item's error and report the first in order.
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  parallel_for(n - 1, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin + 1; i < end + 1; ++i) {
      try {
        Pixels px = load_pixels(files_[i], opts_);
        QSLIM_CHECK(px.h == first.h && px.w == first.w, "ImageFolderDataset::load_all: ", files_[i], " is ", px.w,
                    " x ", px.h, " but ", files_[0], " is ", first.w, " x ", first.h,
                    "; set height and width to resize to one size");
        std::copy(px.data.begin(), px.data.end(), dst + i * per);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  });
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  return std::make_shared<TensorDataset>(images, from_vector<int64_t>(labels_, {n}));
}

}  // namespace qslim::data
