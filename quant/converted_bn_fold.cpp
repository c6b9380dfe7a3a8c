#include "quant/converted_bn_fold.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/factory.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

namespace {

struct Call {
  const nn::Module* module;
  std::vector<const TensorImpl*> inputs;
  const TensorImpl* output;
  std::vector<Tensor> input_tensors;  // held, so no address is reused during the trace
  Tensor output_tensor;
};

class Recorder : public nn::ModuleCallObserver {
 public:
  void on_call(const nn::Module& m, const std::vector<Tensor>& inputs, const Tensor& output) override {
    Call c{&m, {}, output.impl_ptr().get(), inputs, output};
    for (const Tensor& t : inputs) c.inputs.push_back(t.impl_ptr().get());
    calls.push_back(std::move(c));
  }
  std::vector<Call> calls;
};

// The folded layer on the conv's recorded input must give the BN's recorded output up to float
// rounding (both quantize the same input; only the order of the float operations differs).
void check_fold(ConvertedConv2D& folded, const Call& conv_call, const Call& bn_call, const std::string& bn_name) {
  const std::vector<float> want = bn_call.output_tensor.contiguous().to_vector<float>();
  const std::vector<float> got = folded.forward(conv_call.input_tensors[0]).contiguous().to_vector<float>();
  double scale = 0, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
    diff = std::max(diff, std::fabs(static_cast<double>(want[i]) - got[i]));
  }
  QSLIM_CHECK(diff <= 1e-4 * scale + 1e-5, "fold_converted_batch_norms: folding '", bn_name,
              "' changed that conv's output by ", diff, " (output max ", scale, ")");
}

std::string parent_of(const std::string& dotted) {
  const size_t dot = dotted.rfind('.');
  return dot == std::string::npos ? "" : dotted.substr(0, dot);
}
std::string leaf_of(const std::string& dotted) { return dotted.substr(dotted.rfind('.') + 1); }

// The folded layer: the same integer weights with steps s |f|, signs flipped where f < 0.
std::shared_ptr<ConvertedConv2D> folded_layer(const ConvertedConv2D& c, const nn::BatchNorm2D& bn) {
  const Tensor w = c.dequantized_weight();  // [O, I/g, kh, kw], f32
  const int64_t o = w.size(0);
  const std::vector<float> mean = bn.buffer("running_mean").to_vector<float>();
  const std::vector<float> var = bn.buffer("running_var").to_vector<float>();
  std::vector<float> gamma(o, 1.f), beta(o, 0.f);
  if (bn.affine()) gamma = bn.param("weight").to_vector<float>(), beta = bn.param("bias").to_vector<float>();
  std::vector<float> b(o, 0.f);
  if (c.has_bias()) b = c.buffer("bias").to_vector<float>();

  const QuantParams wp = c.weight_params();
  const std::vector<double> s = wp.scales();
  std::vector<double> new_s(o);
  std::vector<float> f(o), new_b(o);
  for (int64_t k = 0; k < o; ++k) {
    f[k] = static_cast<float>(gamma[k] / std::sqrt(static_cast<double>(var[k]) + bn.eps()));
    new_s[k] = s[k] * std::fabs(static_cast<double>(f[k]));
    new_b[k] = beta[k] + (b[k] - mean[k]) * f[k];
  }
  Tensor fw = w.clone();
  float* p = fw.data<float>();
  const int64_t per = w.numel() / o;
  for (int64_t k = 0; k < o; ++k)
    for (int64_t i = 0; i < per; ++i) p[k * per + i] *= f[k];

  const Conv2dParams& cp = c.conv_params();
  nn::Conv2D geometry(c.in_channels(), o, nn::Size2(w.size(2), w.size(3)), nn::Size2(cp.stride[0], cp.stride[1]),
                      nn::Size2(cp.padding[0], cp.padding[1]), nn::Size2(cp.dilation[0], cp.dilation[1]), cp.groups,
                      false);
  auto folded = std::make_shared<ConvertedConv2D>(geometry, c.source_type(), c.weight_grid(), 0, c.input_spec(), true);
  folded->set_weight(fw, per_channel_params(new_s, 0, c.weight_grid(), wp.rounding));
  folded->set_input(c.input_params());
  folded->set_bias(from_vector(new_b, {o}));
  folded->train(false);
  return folded;
}

bool foldable(const ConvertedConv2D& c, const nn::BatchNorm2D& bn) {
  const QuantParams wp = c.weight_params();
  if (!wp.per_channel() || wp.axis != 0 || !wp.symmetric()) return false;
  if (!bn.track_running_stats() || bn.num_features() != wp.channels()) return false;
  if (c.weight_grid().qmin() == -c.weight_grid().qmax()) return true;  // narrow: negation stays on the grid
  // Signed grid: -2^(b-1) has no positive counterpart; fold only when no negative f meets it.
  const std::vector<float> var = bn.buffer("running_var").to_vector<float>();
  std::vector<float> gamma(var.size(), 1.f);
  if (bn.affine()) gamma = bn.param("weight").to_vector<float>();
  const Tensor q = c.buffer("weight");
  const Tensor qf = q.to(DType::F64);
  const std::vector<double> v = qf.to_vector<double>();
  const int64_t per = q.numel() / static_cast<int64_t>(var.size());
  for (size_t k = 0; k < var.size(); ++k) {
    if (gamma[k] >= 0) continue;
    for (int64_t i = 0; i < per; ++i)
      if (v[k * per + i] == c.weight_grid().qmin()) return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> fold_converted_batch_norms(nn::Module& model, const Tensor& example) {
  model.train(false);
  NoGradGuard no_grad;
  std::unordered_map<const nn::Module*, std::string> names;
  for (const auto& [name, m] : model.named_modules()) names.emplace(m.get(), name);

  Recorder rec;
  {
    nn::ScopedCallObserver scope(&rec);
    model.forward(example);
  }
  // How many calls consume each tensor, and which call produced it.
  std::unordered_map<const TensorImpl*, int> uses;
  std::unordered_map<const TensorImpl*, const Call*> producer;
  for (const Call& c : rec.calls) {
    for (const TensorImpl* t : c.inputs) ++uses[t];
    producer[c.output] = &c;  // later (enclosing) calls overwrite: keep leaf producers below
  }
  for (const Call& c : rec.calls)
    if (dynamic_cast<const ConvertedConv2D*>(c.module)) producer[c.output] = &c;

  struct Pair {
    std::string conv, bn;
    const Call *conv_call, *bn_call;
  };
  std::vector<Pair> pairs;
  for (const Call& c : rec.calls) {
    const auto* bn = dynamic_cast<const nn::BatchNorm2D*>(c.module);
    if (!bn || c.inputs.size() != 1) continue;
    auto it = producer.find(c.inputs[0]);
    if (it == producer.end()) continue;
    const auto* conv = dynamic_cast<const ConvertedConv2D*>(it->second->module);
    if (!conv || uses[c.inputs[0]] != 1 || !names.count(conv) || !names.count(bn)) continue;
    const std::string& cn = names[conv];
    const std::string& bnn = names[bn];
    if (parent_of(cn) != parent_of(bnn) || !conv->folded_bn().empty() || !foldable(*conv, *bn)) continue;
    pairs.push_back({cn, bnn, it->second, &c});
  }
  std::vector<std::string> folded;
  for (const Pair& pr : pairs) {
    const std::string &cn = pr.conv, &bnn = pr.bn;
    auto conv = std::dynamic_pointer_cast<ConvertedConv2D>(model.get_submodule(cn));
    auto bn = std::dynamic_pointer_cast<nn::BatchNorm2D>(model.get_submodule(bnn));
    QSLIM_CHECK(conv && bn, "fold_converted_batch_norms: '", cn, "' / '", bnn, "' changed while folding");
    auto layer = folded_layer(*conv, *bn);
    check_fold(*layer, *pr.conv_call, *pr.bn_call, bnn);
    layer->set_folded_bn(leaf_of(bnn));
    model.replace_submodule(cn, layer);
    model.replace_submodule(bnn, std::make_shared<nn::Identity>());
    folded.push_back(bnn);
  }
  return folded;
}

}  // namespace qslim::quant
