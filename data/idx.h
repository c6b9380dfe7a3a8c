// IDX files (the MNIST format) of unsigned bytes, plain or gzip-compressed: a big-endian magic
// 0x0000 08 <ndims>, ndims big-endian u32 dimensions, then exactly prod(dims) bytes.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace qslim::data {

// Reads a u8 tensor shaped as the file's dimensions. The magic must announce `expected_ndims`
// dimensions of unsigned bytes and the data must fill them exactly (truncated or trailing data is an
// error). With max_items >= 0 only the first max_items entries along dim 0 are read, and the rest of
// the file is not checked; `header_shape`, when given, receives the full shape the header announces.
// Errors name the file and what was expected vs found.
Tensor read_idx(const std::string& path, int expected_ndims, int64_t max_items = -1, Shape* header_shape = nullptr);

// Images: magic 0x00000803, u8 [N, H, W]. Labels: magic 0x00000801, u8 [N].
inline Tensor read_idx_images(const std::string& path, int64_t max_items = -1, Shape* header_shape = nullptr) {
  return read_idx(path, 3, max_items, header_shape);
}
inline Tensor read_idx_labels(const std::string& path, int64_t max_items = -1, Shape* header_shape = nullptr) {
  return read_idx(path, 1, max_items, header_shape);
}

}  // namespace qslim::data
