#include "train/dataset_spec.h"

#include <filesystem>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/factory.h"
#include "data/cifar.h"
#include "data/fashion_mnist.h"
#include "data/image_folder.h"
#include "models/registry.h"

namespace qslim::train {

namespace {
constexpr const char* kAllowed =
    "allowed: fashion-mnist, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, folder:DIR, folder:DIR:size=N, "
    "folder:DIR:gray, folder:DIR:size=N,gray";

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  QSLIM_FAIL("dataset '", text, "': ", why, " (", kAllowed, ")");
}

// Folder options "size=32,gray"; returns false when `opts` does not look like options at all.
bool parse_folder_options(const std::string& text, const std::string& opts, DatasetSpec& s) {
  std::stringstream ss(opts);
  std::string item;
  std::vector<std::string> items;
  while (std::getline(ss, item, ',')) items.push_back(item);
  bool any_option = false;
  for (const std::string& it : items)
    any_option = any_option || it == "gray" || it == "rgb" || it.rfind("size=", 0) == 0;
  if (!any_option) return false;
  for (const std::string& it : items) {
    if (it == "gray") {
      s.gray = true;
    } else if (it == "rgb") {
      s.gray = false;
    } else if (it.rfind("size=", 0) == 0) {
      const std::string v = it.substr(5);
      size_t pos = 0;
      int64_t n = 0;
      try {
        n = std::stoll(v, &pos);
      } catch (...) {
        pos = 0;
      }
      if (pos != v.size() || pos == 0 || n <= 0 || n > 4096) bad(text, "size must be an integer in [1, 4096], got '" + v + "'");
      s.size = n;
    } else {
      bad(text, "unknown folder option '" + it + "' (folder options: size=N, gray, rgb)");
    }
  }
  return true;
}

std::shared_ptr<data::TensorDataset> take_first(std::shared_ptr<data::TensorDataset> d, int64_t limit) {
  if (limit < 0 || limit >= d->size()) return d;
  return std::make_shared<data::TensorDataset>(d->images().narrow(0, 0, limit).contiguous(),
                                               d->labels().narrow(0, 0, limit).contiguous());
}

std::string folder_split(const std::string& dir, bool train) {
  namespace fs = std::filesystem;
  std::error_code ec;
  QSLIM_CHECK(fs::is_directory(dir, ec), "dataset folder:", dir, ": not a directory");
  for (const char* name : train ? std::vector<const char*>{"train"} : std::vector<const char*>{"test", "val"}) {
    fs::path p = fs::path(dir) / name;
    if (fs::is_directory(p, ec)) return p.string();
  }
  QSLIM_FAIL("dataset folder:", dir, ": no ", train ? "train/" : "test/ or val/",
             " sub-folder (expected DIR/train/<class>/<images> and DIR/test/<class>/<images>)");
}
}  // namespace

DatasetSpec DatasetSpec::parse(const std::string& text) {
  DatasetSpec s;
  const size_t colon = text.find(':');
  s.kind = text.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (s.kind == "fashion-mnist" || s.kind == "fmnist") {
    s.kind = "fashion-mnist";
    s.dir = rest;
    return s;
  }
  if (s.kind == "cifar10" || s.kind == "cifar100") {
    if (rest.empty()) bad(text, s.kind + " needs the directory of its binary files, e.g. " + s.kind + ":/data/" + s.kind);
    s.dir = rest;
    return s;
  }
  if (s.kind == "folder") {
    s.dir = rest;
    const size_t last = rest.rfind(':');
    if (last != std::string::npos && parse_folder_options(text, rest.substr(last + 1), s)) s.dir = rest.substr(0, last);
    if (s.dir.empty()) bad(text, "folder needs a directory, e.g. folder:/data/flowers:size=64");
    return s;
  }
  bad(text, s.kind.empty() ? std::string("empty dataset name") : "unknown dataset '" + s.kind + "'");
}

std::string DatasetSpec::str() const {
  std::string s = kind;
  if (!dir.empty()) s += ":" + dir;
  if (kind == "folder" && (size > 0 || gray)) {
    s += ":";
    if (size > 0) s += "size=" + std::to_string(size);
    if (gray) s += size > 0 ? ",gray" : "gray";
  }
  return s;
}

LoadedData load_dataset(const DatasetSpec& spec, int64_t limit, bool with_train) {
  LoadedData d;
  if (spec.kind == "fashion-mnist") {
    if (with_train) d.train = data::load_fashion_mnist(true, spec.dir, limit);
    d.test = data::load_fashion_mnist(false, spec.dir, limit);
    d.channels = 1, d.height = d.width = 28, d.num_classes = 10;
    d.description = "Fashion-MNIST (" + data::fashion_mnist_dir(spec.dir) + ")";
  } else if (spec.kind == "cifar10" || spec.kind == "cifar100") {
    const bool c10 = spec.kind == "cifar10";
    auto load = [&](bool train) {
      return c10 ? data::load_cifar10(train, spec.dir, limit)
                 : data::load_cifar100(train, spec.dir, data::CifarLabels::Fine, limit);
    };
    if (with_train) d.train = load(true);
    d.test = load(false);
    d.channels = 3, d.height = d.width = 32, d.num_classes = c10 ? 10 : 100;
    d.description = std::string(c10 ? "CIFAR-10" : "CIFAR-100") + " (" + spec.dir + ")";
  } else if (spec.kind == "folder") {
    data::ImageFolderOptions o;
    o.channels = spec.gray ? 1 : 3;
    o.height = o.width = spec.size;
    data::ImageFolderDataset test_folder(folder_split(spec.dir, false), o);
    if (with_train) {
      data::ImageFolderDataset train_folder(folder_split(spec.dir, true), o);
      QSLIM_CHECK(train_folder.classes() == test_folder.classes(), "dataset folder:", spec.dir, ": ",
                  train_folder.root(), " has ", train_folder.classes().size(), " classes and ", test_folder.root(),
                  " has ", test_folder.classes().size(), "; both splits need the same class folders");
      d.train = take_first(train_folder.load_all(), limit);
    }
    auto test = take_first(test_folder.load_all(), limit);
    const Shape shape = test->image_shape();
    d.test = test;
    d.channels = shape[0], d.height = shape[1], d.width = shape[2];
    d.num_classes = static_cast<int64_t>(test_folder.classes().size());
    d.description = "image folder " + spec.dir;
  } else {
    QSLIM_FAIL("dataset '", spec.kind, "': unknown kind (", kAllowed, ")");
  }
  if (d.train) {
    const Shape s = d.train->get(0).image.shape();
    QSLIM_CHECK(s == Shape({d.channels, d.height, d.width}), "dataset ", spec.str(), ": training images are ",
                shape_str(s), " but test images are ", shape_str(Shape({d.channels, d.height, d.width})));
  }
  return d;
}

void channel_mean_std(const data::Dataset& dataset, std::vector<float>& mean, std::vector<float>& std) {
  QSLIM_CHECK(dataset.size() > 0, "channel_mean_std: empty dataset");
  std::vector<double> sum, sq;
  int64_t per_channel = 0;
  auto accumulate = [&](const float* p, int64_t n, int64_t c, int64_t plane) {
    if (sum.empty()) sum.assign(c, 0.0), sq.assign(c, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < c; ++k) {
        const float* q = p + (i * c + k) * plane;
        double s = 0, s2 = 0;
        for (int64_t j = 0; j < plane; ++j) s += q[j], s2 += static_cast<double>(q[j]) * q[j];
        sum[k] += s, sq[k] += s2;
      }
    per_channel += n * plane;
  };
  const int64_t chunk = 256;
  data::Batch b;
  for (int64_t start = 0; start < dataset.size(); start += chunk) {
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(dataset.size(), start + chunk); ++i) idx.push_back(i);
    dataset.get_batch(idx, b);
    Tensor x = b.images.contiguous();
    accumulate(x.data<float>(), x.size(0), x.size(1), x.size(2) * x.size(3));
  }
  mean.clear(), std.clear();
  for (size_t k = 0; k < sum.size(); ++k) {
    const double m = sum[k] / per_channel, var = std::max(0.0, sq[k] / per_channel - m * m);
    mean.push_back(static_cast<float>(m));
    // A constant channel would divide by zero; 1 leaves it centred.
    std.push_back(var > 1e-12 ? static_cast<float>(std::sqrt(var)) : 1.0f);
  }
}

void normalization_for(const DatasetSpec& spec, const LoadedData& data, std::vector<float>& mean,
                       std::vector<float>& std) {
  if (spec.kind == "fashion-mnist") {
    mean = {0.2860f}, std = {0.3530f};
    return;
  }
  QSLIM_CHECK(data.train != nullptr, "normalization_for: dataset ", spec.str(), " was loaded without its training split");
  channel_mean_std(*data.train, mean, std);
}

std::string model_spec_for(const std::string& model_spec, const LoadedData& data, bool with_image_size) {
  const size_t colon = model_spec.find(':');
  std::map<std::string, std::string> given;
  if (colon != std::string::npos) {
    std::stringstream ss(model_spec.substr(colon + 1));
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) given[item.substr(0, item.find('='))] = item;
  }
  std::vector<std::string> add;
  auto want = [&](const char* key, int64_t value, int64_t registry_default) {
    if (value != registry_default && !given.count(key)) add.push_back(std::string(key) + "=" + std::to_string(value));
  };
  want("in_channels", data.channels, 1);
  want("num_classes", data.num_classes, 10);
  if (with_image_size && (data.height != 28 || data.width != 28)) {
    QSLIM_CHECK(data.height == data.width || given.count("image_size"), "model ", model_spec, ": images are ",
                data.height, " x ", data.width, " but the models take square images (resize with folder:DIR:size=N)");
    want("image_size", data.height, 28);
  }
  if (add.empty()) return model_spec;
  std::string out = model_spec;
  if (colon == std::string::npos)
    out += ":";
  else if (colon + 1 < model_spec.size())
    out += ",";
  for (size_t i = 0; i < add.size(); ++i) out += (i ? "," : "") + add[i];
  return out;
}

std::string resolve_model_spec(const std::string& model_spec, const LoadedData& data) {
  const std::string name = model_spec.substr(0, model_spec.find(':'));
  return model_spec_for(model_spec, data, models::model_accepts(name, "image_size"));
}

}  // namespace qslim::train
