// Shared machinery of the PTQ tools that compare a converted model with its float twins
// (bias_correction, adaround, layer_report): finding the converted layers, swapping them for
// twins, putting modules in eval mode, and recording the inputs/outputs of chosen layers during a
// forward. Everything here restores what it changed when it goes out of scope (also on throw).
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"
#include "quant/converted_layers.h"
#include "quant/float_twin.h"

namespace qslim::quant {

struct ConvertedEntry {
  std::string name;  // dotted name in the model
  std::shared_ptr<ConvertedLayer> layer;
};

// Every ConvertedLayer of `model` (weight layers only when weight_layers_only), in registration
// order. Throws, naming `who`, when there is none, or when a layer has no twin in `twins`.
std::vector<ConvertedEntry> converted_layers(nn::Module& model, const FloatTwins& twins, const char* who,
                                             bool weight_layers_only);

// Puts `m` and everything in it in eval mode; restores every module's own flag afterwards.
class EvalScope {
 public:
  explicit EvalScope(nn::Module& m);
  ~EvalScope();
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  std::vector<std::pair<std::shared_ptr<nn::Module>, bool>> flags_;
};

// Replaces layers[i] by its twin (eval mode) for every i except `keep` (-1: none kept), restoring
// the original modules (the same objects) and the twins' modes afterwards.
class TwinSwap {
 public:
  TwinSwap(nn::Module& model, const std::vector<ConvertedEntry>& layers, const FloatTwins& twins, int64_t keep = -1);
  ~TwinSwap();
  TwinSwap(const TwinSwap&) = delete;
  TwinSwap& operator=(const TwinSwap&) = delete;

 private:
  nn::Module& model_;
  std::vector<std::pair<std::string, nn::ModulePtr>> originals_;
  std::vector<std::unique_ptr<EvalScope>> twin_modes_;
};

// Records (copies of) the inputs and outputs of every call of the watched modules on this thread
// while installed (ScopedCallObserver). Calls are kept in order per watched module.
class CallRecorder : public nn::ModuleCallObserver {
 public:
  void watch(const nn::Module* m, size_t id, bool keep_input, bool keep_output);
  void on_call(const nn::Module& m, const std::vector<Tensor>& inputs, const Tensor& output) override;
  void clear();
  std::vector<Tensor>& inputs(size_t id) { return slots_.at(id).inputs; }
  std::vector<Tensor>& outputs(size_t id) { return slots_.at(id).outputs; }
  // Order of first call among watched ids.
  const std::vector<size_t>& first_calls() const { return order_; }

 private:
  struct Slot {
    bool keep_input = false, keep_output = false, called = false;
    std::vector<Tensor> inputs, outputs;
  };
  std::unordered_map<const nn::Module*, size_t> ids_;
  std::unordered_map<size_t, Slot> slots_;
  std::vector<size_t> order_;
};

// `layers` reordered by first call during model(batch) (execution order); throws naming the
// layers the forward never calls.
std::vector<ConvertedEntry> execution_order(nn::Module& model, const std::vector<ConvertedEntry>& layers,
                                            const Tensor& batch, const char* who);

// Checks a calibration batch list: non-empty, every batch defined and floating.
void check_batches(const std::vector<Tensor>& batches, const char* who);

// The output channel axis of a converted weight layer's output y: 1 for convs, the last for linears.
int64_t output_channel_axis(const ConvertedLayer& layer, const Tensor& y);
// Sums y over every axis but `axis`, in double; *per_channel receives the count of values summed.
std::vector<double> channel_sums(const Tensor& y, int64_t axis, int64_t* per_channel);

}  // namespace qslim::quant
