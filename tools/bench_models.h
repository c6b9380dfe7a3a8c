// Model throughput on random Fashion-MNIST-shaped inputs, measured like shared/peer/bench_torch.py:
// training step (forward, cross-entropy, backward, SGD momentum) at batch 128, inference at batch
// 256 and batch-1 latency, each the median of repeated runs.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace qslim::tools {

struct ModelFigure {
  std::string model;
  double train_img_s = 0;
  double infer_img_s_bs256 = 0;
  double latency_ms_bs1 = 0;
};

// With `qat`, the model is first wrapped by quant::quant_aware with PaddleSlim's default config,
// so the figures are those of a QAT training step (fake-quantized weights and activations).
ModelFigure bench_model(const std::string& spec, int steps, bool qat = false);

// FP32 vs INT8 inference of one model measured in the same run: the FP32 model (untrained, or
// loaded from `checkpoint`), then quant_aware with PaddleSlim's default config, a few calibration
// batches (quanters in train mode, BatchNorm in eval, no grad), convert, and the INT8 engine.
struct Int8Figure {
  std::string model;
  double fp32_img_s_bs256 = 0, int8_img_s_bs256 = 0;
  double fp32_latency_ms_bs1 = 0, int8_latency_ms_bs1 = 0;
  double fp32_file_bytes = 0, int8_file_bytes = 0;  // saved FP32 checkpoint vs converted file
  double top1_agreement = 0;  // % of the timed (random) batch where the engine's top-1 equals the simulated path's;
                             // near-ties are common on noise, see qslim eval --int8 --compare for test images
  // Per engine step, median seconds on one tile of images (the unit a thread runs at batch 256)
  // and at batch 1 (when asked).
  std::vector<std::pair<std::string, double>> profile, profile_bs1;
  int64_t profile_tile = 0;
};
Int8Figure bench_int8_model(const std::string& spec, const std::string& checkpoint = "", bool profile = false);

}  // namespace qslim::tools
