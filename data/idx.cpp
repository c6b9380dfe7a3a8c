#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace qslim::data {

namespace {

// gzread handles both gzip and plain files (zlib's transparent mode).
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    std::error_code ec;
    QSLIM_CHECK(std::filesystem::is_regular_file(path, ec), "read_idx: ", path, ": no such file");
    f_ = gzopen(path.c_str(), "rb");
    QSLIM_CHECK(f_ != nullptr, "read_idx: ", path, ": cannot open (", std::strerror(errno), ")");
    gzbuffer(f_, 1 << 17);
  }
  ~GzFile() {
    if (f_) gzclose(f_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
  int64_t read(void* dst, int64_t n) {
    int64_t done = 0;
    auto* p = static_cast<unsigned char*>(dst);
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 30));
      const int got = gzread(f_, p + done, chunk);
      if (got < 0) {
        int errnum = 0;
        const char* msg = gzerror(f_, &errnum);
        QSLIM_FAIL("read_idx: ", path_, ": read error after ", done, " of ", n, " bytes (", msg, ")");
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }

 private:
  std::string path_;
  gzFile f_ = nullptr;
};

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

}  // namespace

Tensor read_idx(const std::string& path, int expected_ndims, int64_t max_items, Shape* header_shape_out) {
  QSLIM_CHECK(expected_ndims >= 1 && expected_ndims <= 255, "read_idx: expected_ndims must be in [1, 255], got ",
              expected_ndims);
  GzFile f(path);
  unsigned char magic[4];
  const uint32_t want = 0x0800u | static_cast<uint32_t>(expected_ndims);
  const int64_t got_magic = f.read(magic, 4);
  QSLIM_CHECK(got_magic == 4, "read_idx: ", path, ": truncated header: expected a 4-byte magic ", hex32(want),
              ", found ", got_magic, " bytes");
  const uint32_t m = (uint32_t(magic[0]) << 24) | (uint32_t(magic[1]) << 16) | (uint32_t(magic[2]) << 8) | magic[3];
  QSLIM_CHECK(m == want, "read_idx: ", path, ": bad magic: expected ", hex32(want), " (unsigned bytes, ",
              expected_ndims, expected_ndims == 1 ? " dimension" : " dimensions", "), found ", hex32(m));

  Shape shape(expected_ndims);
  int64_t total = 1;
  for (int d = 0; d < expected_ndims; ++d) {
    unsigned char b[4];
    const int64_t got = f.read(b, 4);
    QSLIM_CHECK(got == 4, "read_idx: ", path, ": truncated header: expected ", expected_ndims,
                " 4-byte dimensions, found only ", d);
    shape[d] = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]);
    QSLIM_CHECK(shape[d] == 0 || total <= (int64_t(1) << 40) / shape[d], "read_idx: ", path, ": dimensions ",
                shape_str(Shape(shape.begin(), shape.begin() + d + 1)), " are implausibly large");
    total *= shape[d];
  }

  const bool partial = max_items >= 0 && max_items < shape[0];
  const Shape header_shape = shape;
  if (header_shape_out) *header_shape_out = header_shape;
  if (partial) shape[0] = max_items;
  Tensor out = Tensor::empty(shape, DType::U8);
  const int64_t n = out.numel();
  const int64_t got = f.read(out.data<uint8_t>(), n);
  QSLIM_CHECK(got == n, "read_idx: ", path, ": truncated data: header ", shape_str(header_shape), " needs ", total,
              " data bytes, found ", got);
  if (!partial) {
    unsigned char extra;
    QSLIM_CHECK(f.read(&extra, 1) == 0, "read_idx: ", path, ": trailing data: expected the file to end after ", total,
                " data bytes for ", shape_str(header_shape), ", found more");
  }
  return out;
}

}  // namespace qslim::data
