// qslim bench: GEMM GFLOP/s vs plain Eigen, model throughput vs PyTorch measured in the same run,
// peak RSS.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "tools/bench_gemm.h"
#include "tools/bench_models.h"
#include "tools/commands.h"
#include "tools/peak_rss.h"
#include "tools/torch_reference.h"

namespace qslim::tools {

namespace {
struct BenchOptions {
  bool json = false;
  int threads = 2;
  int steps = 30;
  bool torch = true;
  std::vector<std::string> models{"lenet"};
  bool gemm = true;
  bool qat = false;
};

void run_bench(const BenchOptions& o) {
  set_num_threads(o.threads);
  nlohmann::json out;
  out["threads"] = o.threads;
  if (o.gemm) {
    auto gemm = bench_gemm({256, 512, 1024}, {1, 2});
    for (const auto& g : gemm) {
      out["gemm"].push_back({{"size", g.size}, {"threads", g.threads}, {"qslim_gflops", g.qslim_gflops},
                             {"eigen_gflops", g.eigen_gflops}, {"ratio", g.qslim_gflops / g.eigen_gflops}});
      if (!o.json)
        std::printf("sgemm %4lld^3 %d thr: qslim %7.1f GFLOP/s  plain Eigen %7.1f GFLOP/s  (%.2fx)\n",
                    static_cast<long long>(g.size), g.threads, g.qslim_gflops, g.eigen_gflops,
                    g.qslim_gflops / g.eigen_gflops);
    }
  }
  set_num_threads(o.threads);
  std::vector<ModelFigure> ours;
  for (const auto& m : o.models) ours.push_back(bench_model(m, o.steps));
  if (o.qat) {
    for (const auto& m : o.models) {
      ModelFigure fp32 = bench_model(m, o.steps), qat = bench_model(m, o.steps, true);
      double cost = fp32.train_img_s / qat.train_img_s;
      out["qat"].push_back({{"model", fp32.model}, {"fp32_train_img_s", fp32.train_img_s},
                            {"qat_train_img_s", qat.train_img_s}, {"qat_step_cost", cost}});
      if (!o.json)
        std::printf("%-20s QAT train %8.0f img/s vs FP32 %8.0f img/s: a QAT step costs %.2fx the FP32 step\n",
                    fp32.model.c_str(), qat.train_img_s, fp32.train_img_s, cost);
    }
  }
  std::optional<TorchReference> ref;
  std::string why;
  if (o.torch) ref = run_torch_reference(find_peer_dir(), o.threads, o.steps, why);
  if (!ref && !o.json && o.torch) std::printf("PyTorch reference unavailable: %s\n", why.c_str());
  if (ref) out["torch_version"] = ref->version;
  for (const auto& f : ours) {
    nlohmann::json row = {{"model", f.model},
                          {"train_img_s", f.train_img_s},
                          {"infer_img_s_bs256", f.infer_img_s_bs256},
                          {"latency_ms_bs1", f.latency_ms_bs1}};
    const ModelFigure* t = nullptr;
    if (ref && ref->models.count(f.model)) t = &ref->models.at(f.model);
    if (t) {
      row["torch"] = {{"train_img_s", t->train_img_s},
                      {"infer_img_s_bs256", t->infer_img_s_bs256},
                      {"latency_ms_bs1", t->latency_ms_bs1}};
      row["ratio_train"] = f.train_img_s / t->train_img_s;
      row["ratio_infer_bs256"] = f.infer_img_s_bs256 / t->infer_img_s_bs256;
      row["ratio_latency_bs1"] = t->latency_ms_bs1 / f.latency_ms_bs1;
    }
    out["models"].push_back(row);
    if (o.json) continue;
    std::printf("%-20s train %8.0f img/s  infer bs256 %8.0f img/s  bs1 %.3f ms\n", f.model.c_str(), f.train_img_s,
                f.infer_img_s_bs256, f.latency_ms_bs1);
    if (t)
      std::printf("%-20s train %8.0f img/s  infer bs256 %8.0f img/s  bs1 %.3f ms   (PyTorch %s)\n"
                  "%-20s train %7.2fx         infer %7.2fx               bs1 %.2fx  (qslim / PyTorch speed)\n",
                  "", t->train_img_s, t->infer_img_s_bs256, t->latency_ms_bs1, ref->version.c_str(), "",
                  f.train_img_s / t->train_img_s, f.infer_img_s_bs256 / t->infer_img_s_bs256,
                  t->latency_ms_bs1 / f.latency_ms_bs1);
  }
  out["peak_rss_mib"] = peak_rss_mib();
  if (o.json)
    std::printf("%s\n", out.dump(2).c_str());
  else
    std::printf("peak RSS %.1f MiB\n", peak_rss_mib());
}
}  // namespace

void add_bench_command(CLI::App& app) {
  auto opts = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmark GEMM and model throughput against PyTorch, in one run");
  cmd->add_flag("--json", opts->json, "Print figures as JSON");
  cmd->add_option("--threads", opts->threads, "Threads (also passed to PyTorch)")->check(CLI::Range(1, 256));
  cmd->add_option("--steps", opts->steps, "Timed training steps per model")->check(CLI::Range(3, 100000));
  cmd->add_option("--models", opts->models, "Model specs to time")->delimiter(',');
  cmd->add_flag("!--no-torch", opts->torch, "Skip the PyTorch reference run");
  cmd->add_flag("!--no-gemm", opts->gemm, "Skip the GEMM figures");
  cmd->add_flag("--qat", opts->qat, "Also time a QAT training step (PaddleSlim default config) against FP32");
  cmd->callback([opts] { run_bench(*opts); });
}

}  // namespace qslim::tools
