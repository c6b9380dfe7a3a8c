// Model throughput on random Fashion-MNIST-shaped inputs, measured like shared/peer/bench_torch.py:
// training step (forward, cross-entropy, backward, SGD momentum) at batch 128, inference at batch
// 256 and batch-1 latency, each the median of repeated runs.
#pragma once
#include <string>

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

}  // namespace qslim::tools
