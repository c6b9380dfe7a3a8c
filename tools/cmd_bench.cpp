// qslim bench: GEMM GFLOP/s vs plain Eigen, model throughput vs PyTorch measured in the same run,
// peak RSS. With --int8: FP32 vs INT8-engine inference of each model, in one run.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "models/registry.h"
#include "tools/bench_gemm.h"
#include "tools/bench_models.h"
#include "tools/commands.h"
#include "tools/peak_rss.h"
#include "tools/torch_int8_reference.h"
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
  bool int8 = false;
  bool models_given = false;
  bool profile = false;
  std::vector<std::string> checkpoints;  // "model=path"
};

std::string checkpoint_for(const BenchOptions& o, const std::string& model) {
  for (const std::string& c : o.checkpoints) {
    const auto eq = c.find('=');
    QSLIM_CHECK(eq != std::string::npos && eq > 0, "qslim bench: --checkpoints entries are MODEL=FILE, got '", c, "'");
    if (c.substr(0, eq) == model) return c.substr(eq + 1);
  }
  return "";
}

void run_bench_int8(const BenchOptions& o) {
  set_num_threads(o.threads);
  const std::vector<std::string> models =
      o.models_given ? o.models : std::vector<std::string>{"lenet", "resnet20", "mobilenet_v2_small"};
  nlohmann::json out;
  out["threads"] = o.threads;
  std::vector<Int8Figure> figures;
  for (const std::string& m : models) {
    figures.push_back(bench_int8_model(m, checkpoint_for(o, models::ModelArgs::parse(m).name()), o.profile));
    set_num_threads(o.threads);
  }
  // PyTorch runs after ours, in the same process run, on the same thread count.
  std::optional<TorchInt8Reference> ref;
  std::string why;
  if (o.torch) {
    std::vector<std::string> names;
    for (const Int8Figure& f : figures) names.push_back(f.model);
    ref = run_torch_int8_reference(find_peer_dir(), o.threads, names, why);
  }
  if (ref) {
    out["torch_version"] = ref->version;
    out["torch_engine"] = ref->engine;
  } else if (o.torch) {
    out["torch_unavailable"] = why;
  }
  if (!o.json) {
    std::printf("| model | FP32 img/s (bs256) | INT8 img/s (bs256) | INT8/FP32 | FP32 bs1 ms | INT8 bs1 ms | "
                "bs1 FP32/INT8 | file INT8/FP32 | top-1 agreement (random inputs) |");
    if (ref) std::printf(" PyTorch FP32 img/s | PyTorch INT8 img/s | PyTorch INT8 bs1 ms | ours/PyTorch INT8 bs256 | "
                         "ours/PyTorch INT8 bs1 |");
    std::printf("\n|---|---|---|---|---|---|---|---|---|%s\n", ref ? "---|---|---|---|---|" : "");
  }
  for (const Int8Figure& f : figures) {
    const double ratio = f.int8_img_s_bs256 / f.fp32_img_s_bs256;
    const double bs1 = f.fp32_latency_ms_bs1 / f.int8_latency_ms_bs1;
    const double size = f.int8_file_bytes / f.fp32_file_bytes;
    nlohmann::json row = {{"model", f.model},
                          {"fp32_img_s_bs256", f.fp32_img_s_bs256},
                          {"int8_img_s_bs256", f.int8_img_s_bs256},
                          {"int8_over_fp32_bs256", ratio},
                          {"fp32_latency_ms_bs1", f.fp32_latency_ms_bs1},
                          {"int8_latency_ms_bs1", f.int8_latency_ms_bs1},
                          {"bs1_speedup", bs1},
                          {"fp32_file_bytes", f.fp32_file_bytes},
                          {"int8_file_bytes", f.int8_file_bytes},
                          {"file_ratio", size},
                          {"top1_agreement", f.top1_agreement}};
    const TorchInt8Figure* t = nullptr;
    if (ref && ref->models.count(f.model)) t = &ref->models.at(f.model);
    if (t) {
      row["torch"] = {{"fp32_img_s_bs256", t->fp32_img_s_bs256},
                      {"int8_img_s_bs256", t->int8_img_s_bs256},
                      {"fp32_latency_ms_bs1", t->fp32_latency_ms_bs1},
                      {"int8_latency_ms_bs1", t->int8_latency_ms_bs1}};
      row["ratio_int8_vs_torch_int8_bs256"] = f.int8_img_s_bs256 / t->int8_img_s_bs256;
      row["ratio_int8_vs_torch_int8_bs1"] = t->int8_latency_ms_bs1 / f.int8_latency_ms_bs1;
    }
    out["models"].push_back(row);
    if (o.json) continue;
    std::printf("| %s | %.0f | %.0f | %.2fx | %.3f | %.3f | %.2fx | %.3f | %.1f%% |", f.model.c_str(),
                f.fp32_img_s_bs256, f.int8_img_s_bs256, ratio, f.fp32_latency_ms_bs1, f.int8_latency_ms_bs1, bs1, size,
                f.top1_agreement);
    if (t)
      std::printf(" %.0f | %.0f | %.3f | %.2fx | %.2fx |", t->fp32_img_s_bs256, t->int8_img_s_bs256,
                  t->int8_latency_ms_bs1, f.int8_img_s_bs256 / t->int8_img_s_bs256,
                  t->int8_latency_ms_bs1 / f.int8_latency_ms_bs1);
    else if (ref)
      std::printf(" - | - | - | - | - |");
    std::printf("\n");
  }
  if (!o.json) {
    if (ref) std::printf("PyTorch %s, quantized engine %s, %d threads\n", ref->version.c_str(), ref->engine.c_str(),
                         ref->threads);
    else if (o.torch) std::printf("PyTorch INT8 reference unavailable: %s\n", why.c_str());
    if (o.profile) {
      for (const Int8Figure& f : figures) {
        double total = 0, total1 = 0;
        for (const auto& [step, sec] : f.profile) total += sec;
        for (const auto& [step, sec] : f.profile_bs1) total1 += sec;
        std::printf("%s engine steps: tile of %lld images, us (share) | batch 1 us (share) | step\n", f.model.c_str(),
                    static_cast<long long>(f.profile_tile));
        for (size_t i = 0; i < f.profile.size(); ++i)
          std::printf("    %8.2f %5.1f%% | %8.2f %5.1f%% | %s\n", 1e6 * f.profile[i].second,
                      100 * f.profile[i].second / total, 1e6 * f.profile_bs1[i].second,
                      100 * f.profile_bs1[i].second / total1, f.profile[i].first.c_str());
      }
    }
  }
  out["peak_rss_mib"] = peak_rss_mib();
  if (o.json)
    std::printf("%s\n", out.dump(2).c_str());
  else
    std::printf("peak RSS %.1f MiB\n", peak_rss_mib());
}

void run_bench(const BenchOptions& o) {
  if (o.int8) {
    run_bench_int8(o);
    return;
  }
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
    auto int8 = bench_int8_gemm(1024, {1, 2});
    out["int8_gemm"] = int8_gemm_json(int8);
    if (!o.json) print_int8_gemm(int8);
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
  cmd->add_flag("--int8", opts->int8,
                "FP32 vs INT8-engine inference (models default to lenet,resnet20,mobilenet_v2_small)");
  cmd->add_flag("--profile", opts->profile, "With --int8: time every engine step (on one tile of images and at batch 1)");
  cmd->add_option("--checkpoints", opts->checkpoints, "With --int8: MODEL=FILE FP32 checkpoints to quantize")
      ->delimiter(',');
  cmd->callback([opts, cmd] {
    opts->models_given = cmd->count("--models") > 0;
    run_bench(*opts);
  });
}

}  // namespace qslim::tools
