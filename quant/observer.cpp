#include "quant/observer.h"

#include <algorithm>
#include <cctype>

#include "quant/absmax_observer.h"
#include "quant/avg_observer.h"
#include "quant/channel_wise_weight_observers.h"
#include "quant/hist_observer.h"
#include "quant/kl_observer.h"
#include "quant/search_observer.h"

namespace qslim::quant {

namespace {

std::string lower(const std::string& s) {
  std::string r = s;
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) { return std::tolower(c); });
  return r;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& t : v) s += (s.empty() ? "" : ", ") + t;
  return s;
}

}  // namespace

const std::vector<std::string>& observer_types() {
  static const std::vector<std::string> types = {"AbsmaxObserver", "AVGObserver", "HistObserver",
                                                 "KLObserver",     "MSEObserver", "EMDObserver",
                                                 "AbsMaxChannelWiseWeightObserver",
                                                 "MSEChannelWiseWeightObserver"};
  return types;
}

const std::vector<std::string>& ptq_algos() {
  static const std::vector<std::string> algos = {"abs_max", "direct", "avg", "hist", "KL", "mse", "emd"};
  return algos;
}

std::string observer_type_for_algo(const std::string& algo) {
  const std::string a = lower(algo);
  if (a == "abs_max" || a == "direct") return "AbsmaxObserver";
  if (a == "avg") return "AVGObserver";
  if (a == "hist") return "HistObserver";
  if (a == "kl") return "KLObserver";
  if (a == "mse") return "MSEObserver";
  if (a == "emd") return "EMDObserver";
  QSLIM_FAIL("unknown PTQ algo '", algo, "'; allowed (any case): ", joined(ptq_algos()));
}

QuanterPtr make_observer(const std::string& type, const QuanterOptions& options) {
  check_bits(options.bits, type);
  if (type == "AbsmaxObserver") return std::make_shared<AbsmaxObserver>(options);
  if (type == "AVGObserver") return std::make_shared<AVGObserver>(options);
  if (type == "HistObserver") return std::make_shared<HistObserver>(options);
  if (type == "KLObserver") return std::make_shared<KLObserver>(options);
  if (type == "MSEObserver") return std::make_shared<MSEObserver>(options);
  if (type == "EMDObserver") return std::make_shared<EMDObserver>(options);
  if (type == "AbsMaxChannelWiseWeightObserver") return std::make_shared<AbsMaxChannelWiseWeightObserver>(options);
  if (type == "MSEChannelWiseWeightObserver") return std::make_shared<MSEChannelWiseWeightObserver>(options);
  QSLIM_FAIL("make_observer: unknown observer type '", type, "'; allowed: ", joined(observer_types()));
}

}  // namespace qslim::quant
