#include "nn/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/grad_mode.h"

namespace qslim::nn {

static_assert(std::endian::native == std::endian::little, "checkpoint: tensor bytes are written as stored in memory");

namespace {

using nlohmann::json;

const char* st_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::U8: return "U8";
    case DType::I8: return "I8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  QSLIM_FAIL("checkpoint: dtype without a safetensors name");
}

bool st_dtype_from(const std::string& s, DType& out) {
  for (DType t : {DType::F32, DType::F64, DType::U8, DType::I8, DType::I16, DType::I32, DType::I64})
    if (s == st_dtype(t)) {
      out = t;
      return true;
    }
  return false;
}

std::string sys_error() { return std::strerror(errno); }

// Closes the temporary file and removes it unless the save committed.
struct TmpFile {
  std::string path;
  FILE* f = nullptr;
  bool committed = false;
  ~TmpFile() {
    if (f) std::fclose(f);
    if (!committed && !path.empty()) std::remove(path.c_str());
  }
};

void fsync_parent_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: the rename itself already happened
  ::fsync(fd);
  ::close(fd);
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

uint64_t header_uint(const json& v, const std::string& path, const std::string& what) {
  QSLIM_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), "load_tensors: ", path,
              ": ", what, " must be a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& path, const std::string& name, const json& v, uint64_t data_size) {
  const std::string where = "tensor '" + name + "'";
  QSLIM_CHECK(v.is_object(), "load_tensors: ", path, ": ", where, " header entry is not an object: ", v.dump());
  for (const char* key : {"dtype", "shape", "data_offsets"})
    QSLIM_CHECK(v.contains(key), "load_tensors: ", path, ": ", where, " has no '", key, "'");
  Entry e;
  e.name = name;
  QSLIM_CHECK(v["dtype"].is_string(), "load_tensors: ", path, ": ", where, " dtype is not a string: ", v["dtype"].dump());
  const std::string ds = v["dtype"].get<std::string>();
  QSLIM_CHECK(st_dtype_from(ds, e.dtype), "load_tensors: ", path, ": ", where, " has unknown dtype '", ds,
              "' (supported: F32, F64, U8, I8, I16, I32, I64)");
  QSLIM_CHECK(v["shape"].is_array(), "load_tensors: ", path, ": ", where, " shape is not an array: ", v["shape"].dump());
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : v["shape"]) {
    QSLIM_CHECK(!(d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0), "load_tensors: ", path,
                ": ", where, " has a negative dimension in shape ", v["shape"].dump());
    uint64_t n = header_uint(d, path, where + " shape entry");
    QSLIM_CHECK(n <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "load_tensors: ", path, ": ",
                where, " dimension ", n, " is too large");
    if (n != 0 && numel > std::numeric_limits<uint64_t>::max() / n) overflow = true;
    numel *= n;
    e.shape.push_back(static_cast<int64_t>(n));
  }
  const json& off = v["data_offsets"];
  QSLIM_CHECK(off.is_array() && off.size() == 2, "load_tensors: ", path, ": ", where,
              " data_offsets must be [begin, end], got ", off.dump());
  e.begin = header_uint(off[0], path, where + " data_offsets begin");
  e.end = header_uint(off[1], path, where + " data_offsets end");
  QSLIM_CHECK(e.begin <= e.end, "load_tensors: ", path, ": ", where, " data_offsets begin ", e.begin,
              " is after end ", e.end);
  QSLIM_CHECK(e.end <= data_size, "load_tensors: ", path, ": ", where, " data_offsets [", e.begin, ", ", e.end,
              "] out of range: the data section has ", data_size, " bytes");
  const uint64_t esize = dtype_size(e.dtype);
  overflow = overflow || numel > std::numeric_limits<uint64_t>::max() / esize;
  QSLIM_CHECK(!overflow && numel * esize == e.end - e.begin, "load_tensors: ", path, ": ", where, " with dtype ", ds,
              " and shape ", v["shape"].dump(), " needs ", overflow ? std::string("too many") : std::to_string(numel * esize),
              " bytes but data_offsets span ", e.end - e.begin);
  return e;
}

}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  std::vector<Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    QSLIM_CHECK(!name.empty() && name != "__metadata__", "save_tensors: ", path, ": invalid tensor name '", name, "'");
    QSLIM_CHECK(names.insert(name).second, "save_tensors: ", path, ": duplicate tensor name '", name, "'");
    QSLIM_CHECK(t.defined(), "save_tensors: ", path, ": tensor '", name, "' is undefined");
    QSLIM_CHECK(t.device() == Device::CPU, "save_tensors: ", path, ": tensor '", name, "' is not on the CPU");
    Tensor c = t.detach().contiguous();
    const uint64_t n = c.nbytes();
    header[name] = {{"dtype", st_dtype(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(c);
  }
  std::string hs = header.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned, as safetensors does
  const uint64_t hlen = hs.size();

  TmpFile tmp;
  const std::string tmp_path = path + ".tmp";
  FILE* f = std::fopen(tmp_path.c_str(), "wb");
  QSLIM_CHECK(f != nullptr, "save_tensors: cannot open ", tmp_path, " for writing: ", sys_error());
  tmp.f = f;
  tmp.path = tmp_path;
  auto write = [&](const void* p, size_t n) {
    QSLIM_CHECK(n == 0 || std::fwrite(p, 1, n, f) == n, "save_tensors: writing ", tmp_path, " failed: ", sys_error());
  };
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(hlen >> (8 * i));
  write(len_bytes, 8);
  write(hs.data(), hs.size());
  for (const Tensor& c : data) write(c.raw_data(), c.nbytes());
  QSLIM_CHECK(std::fflush(f) == 0, "save_tensors: writing ", tmp_path, " failed: ", sys_error());
  QSLIM_CHECK(::fsync(fileno(f)) == 0, "save_tensors: fsync of ", tmp_path, " failed: ", sys_error());
  tmp.f = nullptr;
  QSLIM_CHECK(std::fclose(f) == 0, "save_tensors: closing ", tmp_path, " failed: ", sys_error());
  QSLIM_CHECK(std::rename(tmp_path.c_str(), path.c_str()) == 0, "save_tensors: cannot rename ", tmp_path, " to ",
              path, ": ", sys_error());
  tmp.committed = true;
  fsync_parent_dir(path);
}

LoadedTensors load_tensors(const std::string& path) {
  std::error_code ec;
  QSLIM_CHECK(std::filesystem::is_regular_file(path, ec), "load_tensors: ", path, ": no such file");
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  QSLIM_CHECK(!ec, "load_tensors: ", path, ": cannot read the file size: ", ec.message());
  QSLIM_CHECK(file_size >= 8, "load_tensors: ", path, ": file is ", file_size,
              " bytes, too short for the 8-byte header length");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  QSLIM_CHECK(f != nullptr, "load_tensors: cannot open ", path, ": ", sys_error());
  unsigned char len_bytes[8];
  QSLIM_CHECK(std::fread(len_bytes, 1, 8, f.get()) == 8, "load_tensors: ", path, ": cannot read the header length");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  QSLIM_CHECK(hlen <= file_size - 8, "load_tensors: ", path, ": header length ", hlen, " exceeds the ",
              file_size - 8, " bytes that follow it (file truncated or not a safetensors file)");
  std::string hs(hlen, '\0');
  QSLIM_CHECK(std::fread(hs.data(), 1, hlen, f.get()) == hlen, "load_tensors: ", path, ": cannot read the header");
  json header;
  try {
    header = json::parse(hs);
  } catch (const json::exception& e) {
    QSLIM_FAIL("load_tensors: ", path, ": header is not valid JSON: ", e.what());
  }
  QSLIM_CHECK(header.is_object(), "load_tensors: ", path, ": header is not a JSON object");

  const uint64_t data_size = file_size - 8 - hlen;
  LoadedTensors out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      QSLIM_CHECK(it.value().is_object(), "load_tensors: ", path, ": __metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        QSLIM_CHECK(m.value().is_string(), "load_tensors: ", path, ": metadata '", m.key(), "' is not a string: ",
                    m.value().dump());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, it.key(), it.value(), data_size));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Entry* prev = nullptr;  // the non-empty range reaching furthest so far
  for (const Entry& e : entries) {
    if (e.begin == e.end) continue;
    QSLIM_CHECK(!prev || e.begin >= prev->end, "load_tensors: ", path, ": data of tensor '", e.name, "' [", e.begin,
                ", ", e.end, ") overlaps tensor '", prev ? prev->name : "", "' [", prev ? prev->begin : 0, ", ",
                prev ? prev->end : 0, ")");
    prev = &e;
  }
  const uint64_t data_start = 8 + hlen;
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const uint64_t n = e.end - e.begin;
    if (n > 0) {
      QSLIM_CHECK(::fseeko(f.get(), static_cast<off_t>(data_start + e.begin), SEEK_SET) == 0 &&
                      std::fread(t.raw_data(), 1, n, f.get()) == n,
                  "load_tensors: ", path, ": cannot read the data of tensor '", e.name, "'");
    }
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

void save_module(const std::string& path, const Module& module, const std::map<std::string, std::string>& metadata) {
  save_tensors(path, module.state_dict(), metadata);
}

std::map<std::string, std::string> load_module(const std::string& path, Module& module, bool strict) {
  LoadedTensors loaded = load_tensors(path);
  auto format = loaded.metadata.find("format");
  QSLIM_CHECK(format == loaded.metadata.end() || format->second != "qslim-int8", "load_module: ", path,
              " is a quantized model (qslim-int8); load it with quant::load_converted");
  try {
    module.load_state_dict(loaded.tensors, strict);
  } catch (const Error& e) {
    QSLIM_FAIL("load_module: ", path, ": ", e.what());
  }
  return loaded.metadata;
}

}  // namespace qslim::nn
