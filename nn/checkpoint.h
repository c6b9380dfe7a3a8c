// Checkpoints in the safetensors layout, readable by the `safetensors` Python package:
// 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {string: string}, name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...}
// (padded with spaces to a multiple of 8), then the raw little-endian tensor bytes.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"

namespace qslim::nn {

// Writes path + ".tmp", fsyncs it and renames it over `path`, so a failed save never destroys an
// existing file. Tensor names must be unique and not "__metadata__".
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});

struct LoadedTensors {
  NamedTensors tensors;  // in file order (by data offset)
  std::map<std::string, std::string> metadata;
};

// Validates the whole file (header size, JSON, dtypes, shapes, offsets in bounds, sizes matching
// shapes, no overlapping ranges); every error names the file and what is wrong.
LoadedTensors load_tensors(const std::string& path);

void save_module(const std::string& path, const Module& module,
                 const std::map<std::string, std::string>& metadata = {});
// Loads the state dict into `module` (strict: names, shapes and dtypes must all match) and returns
// the file's metadata.
std::map<std::string, std::string> load_module(const std::string& path, Module& module, bool strict = true);

}  // namespace qslim::nn
