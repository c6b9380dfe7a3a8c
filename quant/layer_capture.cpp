#include "quant/layer_capture.h"

#include <algorithm>
#include <unordered_set>

#include "autograd/grad_mode.h"

namespace qslim::quant {

std::vector<ConvertedEntry> converted_layers(nn::Module& model, const FloatTwins& twins, const char* who,
                                             bool weight_layers_only) {
  std::vector<ConvertedEntry> out;
  std::vector<std::string> missing;
  for (const auto& [name, m] : model.named_modules()) {
    auto c = std::dynamic_pointer_cast<ConvertedLayer>(m);
    if (!c || name.empty()) continue;
    if (weight_layers_only && !dynamic_cast<ConvertedWeightLayer*>(c.get())) continue;
    if (!twins.count(name)) missing.push_back(name);
    out.push_back({name, c});
  }
  QSLIM_CHECK(!out.empty(), who, ": the model (", model.type_name(), ") has no converted ",
              weight_layers_only ? "weight layer (ConvertedConv2D / ConvertedLinear)" : "layer",
              "; run quant_aware or PTQ, build float_twins, then convert the model first");
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size(); ++i) list += (i ? ", '" : "'") + missing[i] + "'";
    QSLIM_FAIL(who, ": no float twin for converted layer(s) ", list, " (", twins.size(),
               " twins given); build the twins with float_twins on the same model before convert");
  }
  return out;
}

// ---------------------------------------------------------------- EvalScope / TwinSwap

EvalScope::EvalScope(nn::Module& m) {
  for (const auto& [name, mod] : m.named_modules()) flags_.emplace_back(mod, mod->is_training());
  m.eval();
}

EvalScope::~EvalScope() {
  // Parents come before children, so a parent's recursive train() is overridden by each child's own flag.
  for (auto& [mod, on] : flags_) mod->train(on);
}

TwinSwap::TwinSwap(nn::Module& model, const std::vector<ConvertedEntry>& layers, const FloatTwins& twins,
                   int64_t keep)
    : model_(model) {
  try {
    for (size_t i = 0; i < layers.size(); ++i) {
      if (static_cast<int64_t>(i) == keep) continue;
      const nn::ModulePtr& twin = twins.at(layers[i].name);
      twin_modes_.push_back(std::make_unique<EvalScope>(*twin));
      model.replace_submodule(layers[i].name, twin);
      originals_.emplace_back(layers[i].name, layers[i].layer);
    }
  } catch (...) {
    for (auto it = originals_.rbegin(); it != originals_.rend(); ++it) model_.replace_submodule(it->first, it->second);
    throw;
  }
}

TwinSwap::~TwinSwap() {
  for (auto it = originals_.rbegin(); it != originals_.rend(); ++it) model_.replace_submodule(it->first, it->second);
}

// ---------------------------------------------------------------- CallRecorder

void CallRecorder::watch(const nn::Module* m, size_t id, bool keep_input, bool keep_output) {
  ids_[m] = id;
  Slot& s = slots_[id];
  s.keep_input = keep_input;
  s.keep_output = keep_output;
}

void CallRecorder::on_call(const nn::Module& m, const std::vector<Tensor>& inputs, const Tensor& output) {
  auto it = ids_.find(&m);
  if (it == ids_.end()) return;
  Slot& s = slots_[it->second];
  if (!s.called) order_.push_back(it->second);
  s.called = true;
  // Copies: later in-place ops (relu_, residual adds) may reuse these tensors' storage.
  NoGradGuard no_grad;
  if (s.keep_input) {
    QSLIM_CHECK(inputs.size() == 1, "layer capture: ", m.type_name(), " was called with ", inputs.size(),
                " inputs; only single-input layers can be captured");
    s.inputs.push_back(inputs[0].detach().clone());
  }
  if (s.keep_output) s.outputs.push_back(output.detach().clone());
}

void CallRecorder::clear() {
  for (auto& [id, s] : slots_) {
    s.inputs.clear();
    s.outputs.clear();
  }
}

std::vector<ConvertedEntry> execution_order(nn::Module& model, const std::vector<ConvertedEntry>& layers,
                                            const Tensor& batch, const char* who) {
  CallRecorder rec;
  for (size_t i = 0; i < layers.size(); ++i) rec.watch(layers[i].layer.get(), i, false, false);
  {
    NoGradGuard no_grad;
    nn::ScopedCallObserver scope(&rec);
    model(batch);
  }
  std::vector<ConvertedEntry> out;
  for (size_t i : rec.first_calls()) out.push_back(layers[i]);
  if (out.size() != layers.size()) {
    std::unordered_set<size_t> seen(rec.first_calls().begin(), rec.first_calls().end());
    std::string list;
    for (size_t i = 0; i < layers.size(); ++i)
      if (!seen.count(i)) list += (list.empty() ? "'" : ", '") + layers[i].name + "'";
    QSLIM_FAIL(who, ": the model's forward on a batch ", shape_str(batch.shape()), " never calls converted layer(s) ",
               list, ", so they cannot be calibrated");
  }
  return out;
}

void check_batches(const std::vector<Tensor>& batches, const char* who) {
  QSLIM_CHECK(!batches.empty(), who, ": no calibration batches given (need at least one input batch)");
  for (size_t i = 0; i < batches.size(); ++i) {
    QSLIM_CHECK(batches[i].defined(), who, ": batch ", i, " is undefined");
    QSLIM_CHECK(batches[i].is_floating_point() && batches[i].dim() >= 1 && batches[i].numel() > 0, who,
                ": batch ", i, " must be a non-empty floating tensor, got ", dtype_name(batches[i].dtype()),
                " ", shape_str(batches[i].shape()));
  }
}

// ---------------------------------------------------------------- per-channel sums

int64_t output_channel_axis(const ConvertedLayer& layer, const Tensor& y) {
  if (dynamic_cast<const ConvertedConv2D*>(&layer)) return 1;
  return y.dim() - 1;
}

std::vector<double> channel_sums(const Tensor& y, int64_t axis, int64_t* per_channel) {
  QSLIM_CHECK(axis >= 0 && axis < y.dim(), "channel_sums: axis ", axis, " out of range for ", shape_str(y.shape()));
  const Tensor c = y.detach().to(DType::F64).contiguous();
  const double* p = c.data<double>();
  const int64_t C = y.size(axis);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= y.size(d);
  for (int64_t d = axis + 1; d < y.dim(); ++d) inner *= y.size(d);
  std::vector<double> s(static_cast<size_t>(C), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t ch = 0; ch < C; ++ch) {
      const double* q = p + (o * C + ch) * inner;
      double acc = 0;
      for (int64_t i = 0; i < inner; ++i) acc += q[i];
      s[static_cast<size_t>(ch)] += acc;
    }
  if (per_channel) *per_channel = outer * inner;
  return s;
}

}  // namespace qslim::quant
