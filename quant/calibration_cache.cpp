#include "quant/calibration_cache.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/factory.h"

namespace qslim::quant {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Upper bound of one tensor's header entry: name, dtype, up to 8 dims and two offsets of 20 digits.
constexpr uint64_t kEntryBytes = 320;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string header_text(const std::string& key, const std::vector<Shape>& shapes) {
  json h = json::object();
  h["__metadata__"] = {{"format", kCalibrationCacheFormat},
                       {"key", key},
                       {"batches", std::to_string(shapes.size())}};
  uint64_t offset = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const uint64_t n = static_cast<uint64_t>(numel_of(shapes[i])) * sizeof(float);
    h["batch_" + std::to_string(i)] = {{"dtype", "F32"}, {"shape", shapes[i]}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  return h.dump();
}

std::string sys_error() { return std::strerror(errno); }

}  // namespace

std::string calibration_cache_path(const std::string& dir, const std::string& key) {
  char name[64];
  std::snprintf(name, sizeof name, "calibration_%016llx.safetensors", static_cast<unsigned long long>(fnv1a(key)));
  return (fs::path(dir) / name).string();
}

CalibrationCacheWriter::CalibrationCacheWriter(const std::string& dir, const std::string& key, int64_t max_batches)
    : dir_(dir), key_(key), path_(calibration_cache_path(dir, key)), tmp_(path_ + ".tmp"), max_batches_(max_batches) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  QSLIM_CHECK(!ec, "calibration cache: cache_dir ", dir, " cannot be created: ", ec.message());
  f_ = std::fopen(tmp_.c_str(), "wb");
  QSLIM_CHECK(f_ != nullptr, "calibration cache: cache_dir ", dir, " cannot be written (", tmp_, ": ", sys_error(),
              ")");
  // Room for the header: metadata, one entry per batch, the 8-byte length in front.
  reserved_ = header_text(key, {}).size() + kEntryBytes * static_cast<uint64_t>(std::max<int64_t>(max_batches, 0)) + 64;
  reserved_ += (8 - reserved_ % 8) % 8;
  QSLIM_CHECK(std::fseek(f_, static_cast<long>(8 + reserved_), SEEK_SET) == 0, "calibration cache: seeking in ", tmp_,
              " failed: ", sys_error());
}

CalibrationCacheWriter::~CalibrationCacheWriter() {
  if (f_) std::fclose(f_);
  if (!committed_) std::remove(tmp_.c_str());
}

void CalibrationCacheWriter::add(const Tensor& batch) {
  QSLIM_CHECK(!committed_ && f_, "calibration cache: ", path_, " is already committed");
  QSLIM_CHECK(static_cast<int64_t>(shapes_.size()) < max_batches_, "calibration cache: more than the ", max_batches_,
              " announced batches");
  QSLIM_CHECK(batch.dtype() == DType::F32, "calibration cache: batches must be f32, got ", dtype_name(batch.dtype()));
  QSLIM_CHECK(batch.dim() <= 8, "calibration cache: batches of at most 8 dims, got ", shape_str(batch.shape()));
  Tensor c = batch.detach().contiguous();
  const size_t n = c.nbytes();
  QSLIM_CHECK(n == 0 || std::fwrite(c.raw_data(), 1, n, f_) == n, "calibration cache: writing ", tmp_,
              " failed: ", sys_error());
  shapes_.push_back(c.shape());
  offset_ += n;
}

void CalibrationCacheWriter::commit() {
  QSLIM_CHECK(!committed_ && f_, "calibration cache: ", path_, " is already committed");
  std::string hs = header_text(key_, shapes_);
  QSLIM_CHECK(hs.size() <= reserved_, "calibration cache: header of ", hs.size(), " bytes exceeds the reserved ",
              reserved_);
  hs.append(reserved_ - hs.size(), ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((reserved_ >> (8 * i)) & 0xff);
  bool ok = std::fseek(f_, 0, SEEK_SET) == 0 && std::fwrite(len, 1, 8, f_) == 8 &&
            std::fwrite(hs.data(), 1, hs.size(), f_) == hs.size() && std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
  QSLIM_CHECK(ok, "calibration cache: writing ", tmp_, " failed: ", sys_error());
  FILE* f = f_;
  f_ = nullptr;
  QSLIM_CHECK(std::fclose(f) == 0, "calibration cache: closing ", tmp_, " failed: ", sys_error());
  QSLIM_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, "calibration cache: cannot rename ", tmp_, " to ",
              path_, ": ", sys_error());
  committed_ = true;
}

bool CalibrationCacheReader::open(const std::string& dir, const std::string& key) {
  entries_.clear();
  path_ = calibration_cache_path(dir, key);
  std::ifstream in(path_, std::ios::binary);
  if (!in.good()) return false;
  const uint64_t file_size = fs::file_size(path_);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  QSLIM_CHECK(in.good(), "calibration cache ", path_, ": truncated (no header length)");
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | len[i];
  QSLIM_CHECK(hlen <= file_size - 8, "calibration cache ", path_, ": header length ", hlen, " exceeds the file size ",
              file_size);
  std::string hs(hlen, '\0');
  in.read(hs.data(), static_cast<std::streamsize>(hlen));
  json h;
  try {
    h = json::parse(hs);
  } catch (const json::exception& e) {
    QSLIM_FAIL("calibration cache ", path_, ": invalid header: ", e.what());
  }
  const json meta = h.value("__metadata__", json::object());
  QSLIM_CHECK(meta.value("format", "") == kCalibrationCacheFormat, "calibration cache ", path_, ": not a ",
              kCalibrationCacheFormat, " file");
  if (meta.value("key", "") != key) return false;  // a hash collision or another run's settings
  int64_t n = 0;
  try {
    n = std::stoll(meta.value("batches", "-1"));
  } catch (const std::exception&) {
    n = -1;
  }
  QSLIM_CHECK(n >= 0, "calibration cache ", path_, ": bad 'batches' metadata");
  data_start_ = 8 + hlen;
  for (int64_t i = 0; i < n; ++i) {
    const std::string name = "batch_" + std::to_string(i);
    QSLIM_CHECK(h.contains(name), "calibration cache ", path_, ": missing tensor ", name);
    const json& e = h[name];
    Entry entry;
    try {
      QSLIM_CHECK(e.at("dtype") == "F32", "dtype ", e.at("dtype").dump(), " is not F32");
      entry.shape = e.at("shape").get<Shape>();
      entry.begin = e.at("data_offsets").at(0).get<uint64_t>();
      entry.end = e.at("data_offsets").at(1).get<uint64_t>();
    } catch (const std::exception& ex) {
      QSLIM_FAIL("calibration cache ", path_, ": tensor ", name, ": ", ex.what());
    }
    QSLIM_CHECK(entry.end >= entry.begin && entry.end - entry.begin == numel_of(entry.shape) * sizeof(float) &&
                    data_start_ + entry.end <= file_size,
                "calibration cache ", path_, ": tensor ", name, " has inconsistent offsets");
    entries_.push_back(std::move(entry));
  }
  return true;
}

Tensor CalibrationCacheReader::get(int64_t i) const {
  QSLIM_CHECK(i >= 0 && i < size(), "calibration cache ", path_, ": batch ", i, " out of range (", size(), ")");
  const Entry& e = entries_[static_cast<size_t>(i)];
  Tensor t = empty(e.shape, DType::F32);
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
  in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
  QSLIM_CHECK(in.good(), "calibration cache ", path_, ": reading batch ", i, " failed");
  return t;
}

}  // namespace qslim::quant
