#include "tools/torch_reference.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace qslim::tools {

std::string find_peer_dir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("QSLIM_PEER_DIR")) return fs::exists(env) ? env : "";
  for (fs::path p : {fs::path(QSLIM_SOURCE_DIR) / ".." / "shared" / "peer", fs::path("../shared/peer")})
    if (fs::exists(p / "bench_torch.py")) return fs::canonical(p).string();
  return "";
}

std::optional<TorchReference> run_torch_reference(const std::string& peer_dir, int threads, int steps,
                                                  std::string& why) {
  if (peer_dir.empty()) {
    why = "bench_torch.py not found (set QSLIM_PEER_DIR to the directory holding it)";
    return std::nullopt;
  }
  if (!std::filesystem::exists("/usr/bin/python3")) {
    why = "/usr/bin/python3 not found (apt-get install python3-torch libopenblas0-openmp)";
    return std::nullopt;
  }
  std::string cmd = "cd '" + peer_dir + "' && /usr/bin/python3 bench_torch.py --json --threads " +
                    std::to_string(threads) + " --steps " + std::to_string(steps) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    why = "could not start python3";
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  auto brace = out.rfind("\n{");
  std::string json_text = out.substr(brace == std::string::npos ? 0 : brace + 1);
  if (rc != 0 || json_text.empty() || json_text[0] != '{') {
    why = "bench_torch.py failed (is python3-torch installed?): " + out.substr(0, 300);
    return std::nullopt;
  }
  try {
    auto j = nlohmann::json::parse(json_text);
    TorchReference ref;
    ref.version = j.at("torch").get<std::string>();
    for (const auto& r : j.at("results")) {
      ModelFigure f;
      f.model = r.at("model").get<std::string>();
      f.train_img_s = r.at("train_img_s").get<double>();
      f.infer_img_s_bs256 = r.at("infer_img_s_bs256").get<double>();
      f.latency_ms_bs1 = r.at("latency_ms_bs1").get<double>();
      ref.models[f.model] = f;
    }
    return ref;
  } catch (const std::exception& e) {
    why = std::string("could not parse bench_torch.py output: ") + e.what();
    return std::nullopt;
  }
}

}  // namespace qslim::tools
