// Calibration input batches cached on disk (quant_post_static's is_use_cache_file / cache_dir):
// one safetensors file, tensors "batch_0", "batch_1", ... (f32, model-ready inputs) and metadata
//   "format": "qslim-calibration-cache", "key": what data and batch settings produced the batches,
//   "batches": their count.
// The writer streams batch by batch (memory O(one batch)): it reserves room for the JSON header,
// writes the data behind it, then fills the header (padded with spaces, which JSON and
// safetensors readers accept) and renames <path>.tmp over <path>. The reader loads one batch at a
// time, so reusing a cache never holds all batches either.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qslim::quant {

inline constexpr const char* kCalibrationCacheFormat = "qslim-calibration-cache";

// <dir>/calibration_<16 hex digits of a hash of key>.safetensors
std::string calibration_cache_path(const std::string& dir, const std::string& key);

class CalibrationCacheWriter {
 public:
  // Creates `dir` when missing and opens <path>.tmp; throws naming the directory when either fails.
  // At most `max_batches` batches will be added.
  CalibrationCacheWriter(const std::string& dir, const std::string& key, int64_t max_batches);
  ~CalibrationCacheWriter();  // removes the temporary file unless committed
  CalibrationCacheWriter(const CalibrationCacheWriter&) = delete;
  CalibrationCacheWriter& operator=(const CalibrationCacheWriter&) = delete;

  void add(const Tensor& batch);  // f32 on the CPU
  // Writes the header, fsyncs and renames the file into place.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string dir_, key_, path_, tmp_;
  FILE* f_ = nullptr;
  int64_t max_batches_;
  uint64_t reserved_ = 0, offset_ = 0;
  std::vector<Shape> shapes_;
  bool committed_ = false;
};

class CalibrationCacheReader {
 public:
  // Opens the cache of `key` in `dir`. Returns false (leaving the reader closed) when there is no
  // such file or it was written for another key; throws naming the file when it is corrupt.
  bool open(const std::string& dir, const std::string& key);
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  Tensor get(int64_t i) const;  // reads batch i from disk
  const std::string& path() const { return path_; }

 private:
  struct Entry {
    Shape shape;
    uint64_t begin = 0, end = 0;
  };
  std::string path_;
  uint64_t data_start_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace qslim::quant
