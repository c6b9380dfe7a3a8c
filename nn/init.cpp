#include "nn/init.h"

#include <cmath>

#include "core/factory.h"

namespace qslim::nn::init {

namespace {
void check_floating(const Tensor& t, const char* op) {
  QSLIM_CHECK(t.defined(), op, ": undefined tensor");
  QSLIM_CHECK(t.is_floating_point(), op, ": tensor must be floating, got ", dtype_name(t.dtype()), " of shape ",
              shape_str(t.shape()));
}

Tensor fill_from(const Tensor& t, const Tensor& values) {
  Tensor dst = t;
  dst.copy_(values);
  return t;
}

int64_t chosen_fan(const Tensor& t, FanMode mode, const char* op) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  int64_t fan = mode == FanMode::FanIn ? fan_in : fan_out;
  QSLIM_CHECK(fan > 0, op, ": fan is zero for tensor of shape ", shape_str(t.shape()));
  return fan;
}
}  // namespace

double calculate_gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Conv:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU:
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::SELU:
      return 0.75;
  }
  QSLIM_FAIL("calculate_gain: unknown nonlinearity");
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  QSLIM_CHECK(t.dim() >= 2, "calculate_fan_in_and_fan_out: fan in and fan out cannot be computed for a tensor of shape ",
              shape_str(t.shape()), " (fewer than 2 dimensions)");
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor uniform_(const Tensor& t, double a, double b, Generator* gen) {
  check_floating(t, "uniform_");
  QSLIM_CHECK(a <= b, "uniform_: lower bound ", a, " exceeds upper bound ", b);
  return fill_from(t, uniform(t.shape(), a, b, t.dtype(), gen));
}

Tensor normal_(const Tensor& t, double mean, double std, Generator* gen) {
  check_floating(t, "normal_");
  QSLIM_CHECK(std >= 0, "normal_: std must be non-negative, got ", std);
  Tensor r = randn(t.shape(), DType::F64, gen);
  double* p = r.data<double>();
  for (int64_t i = 0; i < r.numel(); ++i) p[i] = mean + std * p[i];
  return fill_from(t, r);
}

Tensor constant_(const Tensor& t, double value) {
  QSLIM_CHECK(t.defined(), "constant_: undefined tensor");
  Tensor dst = t;
  dst.fill_(value);
  return t;
}

Tensor zeros_(const Tensor& t) { return constant_(t, 0.0); }
Tensor ones_(const Tensor& t) { return constant_(t, 1.0); }

Tensor kaiming_uniform_(const Tensor& t, double a, FanMode mode, Nonlinearity nl, Generator* gen) {
  check_floating(t, "kaiming_uniform_");
  const double std = calculate_gain(nl, a) / std::sqrt(static_cast<double>(chosen_fan(t, mode, "kaiming_uniform_")));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(const Tensor& t, double a, FanMode mode, Nonlinearity nl, Generator* gen) {
  check_floating(t, "kaiming_normal_");
  const double std = calculate_gain(nl, a) / std::sqrt(static_cast<double>(chosen_fan(t, mode, "kaiming_normal_")));
  return normal_(t, 0.0, std, gen);
}

Tensor xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_uniform_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  QSLIM_CHECK(fan_in + fan_out > 0, "xavier_uniform_: zero fans for tensor of shape ", shape_str(t.shape()));
  const double a = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return uniform_(t, -a, a, gen);
}

Tensor xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_normal_");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  QSLIM_CHECK(fan_in + fan_out > 0, "xavier_normal_: zero fans for tensor of shape ", shape_str(t.shape()));
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out)), gen);
}

}  // namespace qslim::nn::init
