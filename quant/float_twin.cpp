#include "quant/float_twin.h"

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "quant/conv_bn_fold.h"
#include "quant/quant_layers.h"

namespace qslim::quant {

namespace {

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// A float conv with the geometry of `g` holding copies of weight (and bias, when defined).
nn::ModulePtr conv_twin(const nn::Conv2D& g, const Tensor& weight, const Tensor& bias) {
  auto c = std::make_shared<nn::Conv2D>(g.in_channels(), g.out_channels(), g.kernel_size(), g.stride(), g.padding(),
                                        g.dilation(), g.groups(), bias.defined());
  c->weight().copy_(weight.detach());
  if (bias.defined()) c->bias().copy_(bias.detach());
  return c;
}

nn::ModulePtr make_twin(const QuantedLayer& q) {
  NoGradGuard no_grad;
  if (const auto* cb = dynamic_cast<const QuantedConvBN2D*>(&q))
    return conv_twin(cb->geometry(), cb->folded_weight(), cb->folded_bias());
  if (const auto* c = dynamic_cast<const QuantedConv2D*>(&q)) return conv_twin(c->geometry(), c->weight(), c->bias());
  if (const auto* l = dynamic_cast<const QuantedLinear*>(&q)) {
    const nn::Linear& g = l->geometry();
    auto f = std::make_shared<nn::Linear>(g.in_features(), g.out_features(), l->has_bias());
    f->weight().copy_(l->weight().detach());
    if (l->has_bias()) f->bias().copy_(l->bias().detach());
    return f;
  }
  // Weight-less ops hold no tensors: the wrapped op itself is its float twin.
  if (dynamic_cast<const QuantedOp*>(&q)) return q.child_ptr("op");
  QSLIM_FAIL("float_twins: no float twin for ", q.type_name(), " (quant type ", q.quant_type(),
             "); known wrappers: QuantedConv2D, QuantedConvBN2D, QuantedLinear, QuantedOp");
}

void collect(const nn::Module& m, const std::string& prefix, FloatTwins& out) {
  for (const auto& [leaf, child] : m.named_children()) {
    const std::string name = dotted(prefix, leaf);
    if (const auto* q = dynamic_cast<const QuantedLayer*>(child.get())) {
      if (out.count(name)) continue;
      nn::ModulePtr twin = make_twin(*q);
      twin->train(q->is_training());
      out.emplace(name, std::move(twin));
      continue;  // a wrapper's children are its quanters
    }
    collect(*child, name, out);
  }
}

}  // namespace

FloatTwins float_twins(const nn::Module& wrapped_model) {
  // Building Conv2D / Linear draws their default init from the global generator; the caller's
  // random stream must not depend on whether twins were built.
  const std::string rng_state = global_generator().state();
  FloatTwins twins;
  try {
    collect(wrapped_model, "", twins);
  } catch (...) {
    global_generator().set_state(rng_state);
    throw;
  }
  global_generator().set_state(rng_state);
  QSLIM_CHECK(!twins.empty(), "float_twins: the model (", wrapped_model.type_name(),
              ") holds no quantized layer; call quant_aware or PTQ::quantize first, and build the twins before "
              "convert");
  return twins;
}

}  // namespace qslim::quant
