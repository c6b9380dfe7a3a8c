// Parameter initialisers with PyTorch's fan and gain conventions (torch.nn.init). Each fills the
// tensor in place (untracked) and returns it. Random draws come from `gen`, or from the global
// generator when null, so manual_seed makes model construction reproducible.
#pragma once
#include <cstdint>
#include <utility>

#include "core/random.h"
#include "core/tensor.h"

namespace qslim::nn::init {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Conv, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };

// Recommended gain: 1 for linear/conv/sigmoid, 5/3 tanh, sqrt(2) relu,
// sqrt(2 / (1 + param^2)) leaky_relu (param = negative slope), 3/4 selu.
double calculate_gain(Nonlinearity nl, double param = 0.01);
// (fan_in, fan_out) = (size(1), size(0)) times the receptive field (product of dims from 2 on).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor uniform_(const Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(const Tensor& t, double value);
Tensor zeros_(const Tensor& t);
Tensor ones_(const Tensor& t);
// U(-bound, bound), bound = gain * sqrt(3 / fan).
Tensor kaiming_uniform_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nl = Nonlinearity::LeakyReLU, Generator* gen = nullptr);
// N(0, std), std = gain / sqrt(fan).
Tensor kaiming_normal_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                       Nonlinearity nl = Nonlinearity::LeakyReLU, Generator* gen = nullptr);
// U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// N(0, std), std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace qslim::nn::init
