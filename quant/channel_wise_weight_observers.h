// Per-output-channel weight observers (QUANT_SPEC.md §4), one T_c per index of options.axis
// (options.channels of them), recomputed from the weight on every forward, which fake-quantizes
// with the new steps s_c = T_c / qmax (floored). They are weight observers whatever options.role
// says: role is forced to Weight, so the default grid is the narrow one.
//   AbsMaxChannelWiseWeightObserver: T_c = max|w_c|.
//   MSEChannelWiseWeightObserver: T_c = k * max|w_c| over the k grid of MSEObserver
//     (observer.search_min/search_step), minimising the exact quantization MSE of channel c's
//     values (the first k on ties).
#pragma once
#include <string>
#include <vector>

#include "quant/observer.h"

namespace qslim::quant {

class ChannelWiseWeightObserver : public Observer {
 public:
  ChannelWiseWeightObserver(const QuanterOptions& options, std::string type);

  using Quanter::forward;
  Tensor forward(const Tensor& x) final;
  QuantParams quant_params() const final;
  void finalize() final;
  bool finalized() const final { return true; }
  int64_t batches_seen() const final { return forwards_; }
  std::string type_name() const final { return type_; }
  std::string extra_repr() const override;

  int64_t axis() const { return axis_; }
  int64_t channels() const { return channels_; }

 protected:
  // T_c of each channel of x, which is contiguous f64 laid out [channels, per_channel].
  virtual std::vector<double> thresholds(const double* x, int64_t per_channel) const = 0;

 private:
  std::string type_;
  int64_t axis_, channels_;
  int64_t forwards_ = 0;
};

class AbsMaxChannelWiseWeightObserver : public ChannelWiseWeightObserver {
 public:
  explicit AbsMaxChannelWiseWeightObserver(const QuanterOptions& options);

 protected:
  std::vector<double> thresholds(const double* x, int64_t per_channel) const override;
};

class MSEChannelWiseWeightObserver : public ChannelWiseWeightObserver {
 public:
  explicit MSEChannelWiseWeightObserver(const QuanterOptions& options);

  const std::vector<double>& factors() const { return factors_; }

 protected:
  std::vector<double> thresholds(const double* x, int64_t per_channel) const override;

 private:
  std::vector<double> factors_;
};

}  // namespace qslim::quant
