#include "tools/torch_int8_reference.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace qslim::tools {

std::string find_torch_int8_script() {
  namespace fs = std::filesystem;
  const fs::path p = fs::path(QSLIM_SOURCE_DIR) / "tools" / "torch_int8_bench.py";
  return fs::exists(p) ? fs::canonical(p).string() : "";
}

std::optional<TorchInt8Reference> parse_torch_int8_output(const std::string& output, std::string& why) {
  const auto brace = output.rfind("\n{");
  const std::string json_text = output.substr(brace == std::string::npos ? 0 : brace + 1);
  if (json_text.empty() || json_text[0] != '{') {
    why = "torch_int8_bench.py printed no JSON: " + output.substr(0, 300);
    return std::nullopt;
  }
  try {
    const auto j = nlohmann::json::parse(json_text);
    TorchInt8Reference ref;
    ref.version = j.at("torch").get<std::string>();
    ref.engine = j.at("engine").get<std::string>();
    ref.threads = j.at("threads").get<int>();
    for (const auto& r : j.at("results")) {
      TorchInt8Figure f;
      f.model = r.at("model").get<std::string>();
      f.fp32_img_s_bs256 = r.at("fp32_img_s_bs256").get<double>();
      f.int8_img_s_bs256 = r.at("int8_img_s_bs256").get<double>();
      f.fp32_latency_ms_bs1 = r.at("fp32_latency_ms_bs1").get<double>();
      f.int8_latency_ms_bs1 = r.at("int8_latency_ms_bs1").get<double>();
      ref.models[f.model] = f;
    }
    return ref;
  } catch (const std::exception& e) {
    why = std::string("could not parse torch_int8_bench.py output: ") + e.what();
    return std::nullopt;
  }
}

std::optional<TorchInt8Reference> run_torch_int8_reference(const std::string& peer_dir, int threads,
                                                           const std::vector<std::string>& models, std::string& why) {
  const std::string script = find_torch_int8_script();
  if (script.empty()) {
    why = "tools/torch_int8_bench.py not found in the source tree " QSLIM_SOURCE_DIR;
    return std::nullopt;
  }
  if (peer_dir.empty()) {
    why = "torch_models.py not found (set QSLIM_PEER_DIR to the directory holding it)";
    return std::nullopt;
  }
  if (!std::filesystem::exists("/usr/bin/python3")) {
    why = "/usr/bin/python3 not found (apt-get install python3-torch libopenblas0-openmp)";
    return std::nullopt;
  }
  std::string list;
  for (const auto& m : models) list += (list.empty() ? "" : ",") + m;
  std::string cmd = "/usr/bin/python3 '" + script + "' --json --threads " + std::to_string(threads) +
                    " --peer-dir '" + peer_dir + "'";
  if (!list.empty()) cmd += " --models '" + list + "'";
  cmd += " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    why = "could not start python3";
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) {
    why = "torch_int8_bench.py failed (is python3-torch installed?): " + out.substr(0, 300);
    return std::nullopt;
  }
  return parse_torch_int8_output(out, why);
}

}  // namespace qslim::tools
