// Inverted dropout layer; identity in eval mode.
#pragma once
#include "core/random.h"
#include "nn/module.h"

namespace qslim::nn {

class Dropout : public Module {
 public:
  // gen (not owned) gives the layer its own reproducible mask stream; null uses the global generator.
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override;
  double p() const { return p_; }
  void set_generator(Generator* gen) { gen_ = gen; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace qslim::nn
