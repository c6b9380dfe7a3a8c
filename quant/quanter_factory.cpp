#include "quant/quanter_factory.h"

#include <algorithm>
#include <cctype>

#include "quant/abs_max_quanter.h"
#include "quant/act_lsq_plus_quanter.h"
#include "quant/channel_wise_abs_max_quanter.h"
#include "quant/moving_average_abs_max_quanter.h"
#include "quant/observer.h"
#include "quant/range_abs_max_quanter.h"
#include "quant/weight_lsq_plus_quanter.h"

namespace qslim::quant {

namespace {

std::string allowed_list() {
  std::string s;
  for (const std::string& t : quanter_types()) s += (s.empty() ? "" : ", ") + t;
  for (const std::string& t : observer_types()) s += ", " + t;
  return s;
}

template <typename O>
O with_base(const QuanterOptions& options) {
  O o;
  static_cast<QuantOptions&>(o) = options;
  return o;
}

QuanterPtr make_base(const std::string& type, const QuanterOptions& options) {
  if (type == "abs_max") return std::make_shared<AbsMaxQuanter>(options);
  if (type == "channel_wise_abs_max") {
    auto o = with_base<ChannelWiseAbsMaxOptions>(options);
    o.axis = options.axis;
    o.channels = options.channels;
    return std::make_shared<ChannelWiseAbsMaxQuanter>(o);
  }
  if (type == "range_abs_max") {
    auto o = with_base<RangeAbsMaxOptions>(options);
    o.window_size = options.window_size;
    return std::make_shared<RangeAbsMaxQuanter>(o);
  }
  if (type == "moving_average_abs_max") {
    auto o = with_base<MovingAverageAbsMaxOptions>(options);
    o.moving_rate = options.moving_rate;
    o.paddle_parity_init = options.paddle_parity_init;
    return std::make_shared<MovingAverageAbsMaxQuanter>(o);
  }
  if (type == "lsq_plus") {
    if (options.role == QuantRole::Weight) {
      auto o = with_base<WeightLsqOptions>(options);
      o.per_channel = options.lsq_per_channel;
      o.axis = options.axis;
      o.channels = options.channels;
      o.init = options.lsq_init;
      return std::make_shared<WeightLSQplusQuanter>(o);
    }
    QSLIM_CHECK(!options.lsq_per_channel, "lsq_plus: per-channel steps are for weights only (role is activation)");
    auto o = with_base<ActLsqOptions>(options);
    o.symmetric = options.lsq_symmetric;
    return std::make_shared<ActLSQplusQuanter>(o);
  }
  QSLIM_FAIL("make_quanter: unknown quanter type '", type, "'; allowed: ", allowed_list());
}

}  // namespace

const std::vector<std::string>& quanter_types() {
  static const std::vector<std::string> types = {"abs_max", "channel_wise_abs_max", "range_abs_max",
                                                 "moving_average_abs_max", "lsq_plus"};
  return types;
}

const char* preprocess_name(Preprocess p) { return p == Preprocess::Pact ? "PACT" : "none"; }

Preprocess preprocess_from_name(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  if (upper.empty() || upper == "NONE") return Preprocess::None;
  if (upper == "PACT") return Preprocess::Pact;
  QSLIM_FAIL("unknown preprocess type '", name, "'; allowed: none, PACT");
}

QuanterPtr make_quanter(const std::string& type, const QuanterOptions& options) {
  if (std::find(observer_types().begin(), observer_types().end(), type) != observer_types().end()) {
    check_bits(options.bits, type);
    return make_observer(type, options);
  }
  if (std::find(quanter_types().begin(), quanter_types().end(), type) == quanter_types().end())
    QSLIM_FAIL("make_quanter: unknown quanter type '", type, "'; allowed: ", allowed_list());
  check_bits(options.bits, type);
  QuanterPtr q = make_base(type, options);
  if (options.preprocess == Preprocess::Pact) return std::make_shared<PactQuanter>(q, options.pact);
  return q;
}

}  // namespace qslim::quant
