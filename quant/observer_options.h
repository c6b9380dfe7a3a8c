// Options of the PTQ observers (QUANT_SPEC.md §4), carried inside QuanterOptions so observers are
// built through the same QuanterFactory / make_quanter path as the QAT quanters.
#pragma once
#include <cstdint>

namespace qslim::quant {

// Where the KL search starts: TensorRT's bin 128 (default) or PaddleSlim's middle bin (bins / 2 - 1).
enum class KlStart : uint8_t { TensorRT, Paddle };

struct ObserverOptions {
  int64_t bins = 2048;          // HistObserver, KLObserver, MSEObserver, EMDObserver
  double hist_percent = 0.99999;  // HistObserver
  KlStart kl_start = KlStart::TensorRT;
  // KL may clip at most this share of the non-zero values (1: no limit). KL judges a cut only by
  // the shape it leaves, so a spiky distribution fools it: a normalised image input (a spike at the
  // background value, the rest above it) was cut at the spike, clipping ~40% of the pixels
  // (resnet20 W8A8: -11 points). Clipping 0.1% still lets KL drop real outliers.
  double kl_max_clipped = 1e-3;
  double search_min = 0.30;  // MSE / EMD candidates T = k * max|x|, k = search_min, +search_step, ..., 1.00
  double search_step = 0.02;
};

}  // namespace qslim::quant
