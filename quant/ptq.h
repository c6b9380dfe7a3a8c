// Post-training static quantization (QUANT_SPEC.md §4, §5, §7, §8):
//
//   quant::PTQ ptq(options);        // algo, bits, weight type, op types, ...
//   ptq.quantize(*model);           // folds Conv2D+BatchNorm2D, puts observers in place, eval mode
//   for (...) ptq.calibrate(*model, batch);   // eval mode, no gradients
//   ptq.convert(*model);            // finalizes every observer, then quant::convert
//
// quantize wraps layers exactly as quant_aware does (same wrappers, same names), with fold_bn on,
// and then replaces every activation quanter by the observer of `algo` (bits, grid and rounding
// kept from the quanter the config resolved for that layer, so per-layer rules still apply) and,
// for weight_quantize_type "mse", every weight quanter by an MSEChannelWiseWeightObserver.
// A folded conv in eval mode computes conv(x, W f, beta + (b - running_mean) f), exactly the
// inference-time BN fold, so calibration sees the activations of the folded network. The
// converted model is the same INT8 format as QAT's (save_converted / load_converted).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "quant/observer.h"
#include "quant/observer_options.h"
#include "quant/qat.h"
#include "quant/quant_config.h"

namespace qslim::quant {

struct PtqOptions {
  std::string algo = "hist";  // ptq_algos(): abs_max, direct, avg, hist, KL, mse, emd (any case)
  // channel_wise_abs_max | abs_max | mse (MSEChannelWiseWeightObserver, per output channel)
  std::string weight_quantize_type = "channel_wise_abs_max";
  int weight_bits = 8;      // may differ from activation_bits (e.g. W4A8)
  int activation_bits = 8;
  std::vector<std::string> quantizable_op_type{"Conv2D", "DepthwiseConv2D", "Linear"};  // or Paddle aliases
  bool is_full_quantize = false;
  std::vector<std::string> not_quant_pattern{"skip_quant"};
  std::string dtype = "int8";  // "uint8": unsigned activation grid
  Rounding rounding = Rounding::HalfEven;
  bool fold_bn = true;
  ObserverOptions observer;  // bins, hist_percent, KL start, MSE/EMD search grid
};

// Checks the options (algo, weight type, bits) and returns the QuantConfig whose placement
// (op types, skips, fold_bn, bits) PTQ::quantize uses. Errors list the allowed values.
QuantConfig ptq_config(const PtqOptions& options);
// The weight quantize types PTQ accepts.
const std::vector<std::string>& ptq_weight_types();

class PTQ {
 public:
  explicit PTQ(const PtqOptions& options = {});
  // A hand-made config (rules, skip(), layer configs) for the placement; `options` chooses the
  // observers. fold_bn is taken from the config.
  PTQ(QuantConfig config, const PtqOptions& options);

  const QuantConfig& config() const { return config_; }
  const PtqOptions& options() const { return options_; }
  const std::string& activation_observer() const { return act_observer_; }  // e.g. "KLObserver"

  // Wraps and instruments `model` in place and puts it in eval mode; returns what was wrapped.
  // Throws when nothing is quantizable (naming the op types) or the model is already quantized.
  std::vector<PlannedLayer> quantize(nn::Module& model);
  // One calibration forward: eval mode, no gradients; returns the model output.
  Tensor calibrate(nn::Module& model, const Tensor& batch) const;
  // Finalizes every observer. Throws naming the observers that saw no batch (e.g. a layer the
  // forward never reached) and when the model holds no observer (quantize first).
  void finalize(nn::Module& model) const;
  // finalize, then quant::convert: the INT8 model (integer weights, frozen scales).
  void convert(nn::Module& model) const;

 private:
  QuantConfig config_;
  PtqOptions options_;
  std::string act_observer_;
};

// Every observer in the model with its dotted name, in model order.
std::vector<std::pair<std::string, Observer*>> observers_of(nn::Module& model);

}  // namespace qslim::quant
