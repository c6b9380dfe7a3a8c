// Runs tools/torch_int8_bench.py (PyTorch's eager-mode INT8, oneDNN engine, on the peer models) so
// qslim's INT8 benchmark reports ratios against PyTorch measured in the same run.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qslim::tools {

struct TorchInt8Figure {
  std::string model;
  double fp32_img_s_bs256 = 0, int8_img_s_bs256 = 0;        // inference throughput at batch 256
  double fp32_latency_ms_bs1 = 0, int8_latency_ms_bs1 = 0;  // batch-1 latency
};

struct TorchInt8Reference {
  std::string version;  // torch.__version__
  std::string engine;   // quantized engine used: "onednn" unless unavailable (then fbgemm/qnnpack)
  int threads = 0;
  std::map<std::string, TorchInt8Figure> models;
};

// tools/torch_int8_bench.py in the source tree; "" if absent.
std::string find_torch_int8_script();
// Runs the script with /usr/bin/python3 on `models` (all three zoo models when empty), with the peer
// directory from find_peer_dir() (torch_reference.h). nullopt (with `why` set) when python3-torch,
// the script or the peer models are missing, or the run fails.
std::optional<TorchInt8Reference> run_torch_int8_reference(const std::string& peer_dir, int threads,
                                                           const std::vector<std::string>& models, std::string& why);
// Parses the script's --json output (the last line that starts with '{'; earlier lines may be
// warnings).
std::optional<TorchInt8Reference> parse_torch_int8_output(const std::string& output, std::string& why);

}  // namespace qslim::tools
