// TensorObserver: the shared machinery of the per-tensor PTQ observers (AbsmaxObserver,
// AVGObserver, HistObserver, KLObserver, MSEObserver, EMDObserver); each subclass only gathers
// its statistic and turns it into a threshold T.
//
// Activation role: forward(x) while calibrating records x and returns x itself (no copy);
// finalize() (or the first quant_params()) sets the "scale" buffer to s = T / qmax (floored at
// kScaleFloor, so an all-zero calibration gives the floor step) and forward then fake-quantizes.
// A "scale" buffer found non-zero before any batch (a loaded checkpoint) counts as finalized.
// Weight role: every forward recomputes T from the given tensor alone and fake-quantizes.
// Empty tensors are ignored (not counted as batches).
#pragma once
#include <string>

#include "quant/observer.h"

namespace qslim::quant {

class TensorObserver : public Observer {
 public:
  TensorObserver(const QuanterOptions& options, std::string type);

  using Quanter::forward;
  Tensor forward(const Tensor& x) final;
  QuantParams quant_params() const final;
  void finalize() final;
  bool finalized() const final;
  int64_t batches_seen() const final { return batches_; }
  std::string type_name() const final { return type_; }
  std::string extra_repr() const override;

 protected:
  // Records a non-empty, detached x.
  virtual void observe(const Tensor& x) = 0;
  // T >= 0 from everything recorded since the last reset (0 when nothing non-zero was seen).
  virtual double compute_threshold() const = 0;
  // Drops the recorded statistics (weight role: before each forward).
  virtual void reset() = 0;
  // Options shown after the common ones by extra_repr (e.g. "bins=2048").
  virtual std::string observer_repr() const { return ""; }

 private:
  void freeze() const;
  double checked_threshold() const;

  std::string type_;
  int64_t batches_ = 0;
  mutable bool finalized_ = false;
};

}  // namespace qslim::quant
