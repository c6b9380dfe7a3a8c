// Quanters by type name, for QuantConfig and PaddleSlim-style configs:
//   "abs_max", "channel_wise_abs_max", "range_abs_max", "moving_average_abs_max", "lsq_plus",
// and the PTQ observers by their PaddleSlim class names ("HistObserver", "KLObserver", ...).
// ("lsq_plus" makes a WeightLSQplusQuanter for role Weight, an ActLSQplusQuanter for role
// Activation). preprocess = Pact wraps the result in a PactQuanter.
#pragma once
#include <string>
#include <vector>

#include "quant/lsq_init.h"
#include "quant/observer_options.h"
#include "quant/pact_quanter.h"
#include "quant/quanter.h"

namespace qslim::quant {

enum class Preprocess : uint8_t { None, Pact };
const char* preprocess_name(Preprocess p);  // "none", "PACT"
// "none" or "" -> None, "PACT" (any case) -> Pact; anything else throws listing the allowed names.
Preprocess preprocess_from_name(const std::string& name);

// The union of every quanter's options; each type reads the fields it documents.
struct QuanterOptions : QuantOptions {
  int64_t axis = 0;                     // channel_wise_abs_max; lsq_plus weights with lsq_per_channel
  int64_t channels = 0;                 // size of `axis` in the quantized tensor (required by those two)
  int64_t window_size = 10000;          // range_abs_max
  double moving_rate = 0.9;             // moving_average_abs_max
  bool paddle_parity_init = false;      // moving_average_abs_max: state = accum = 1
  bool lsq_per_channel = false;         // lsq_plus, weights only
  LsqInit lsq_init = LsqInit::LsqPlus;  // lsq_plus, weights
  bool lsq_symmetric = false;           // lsq_plus, activations: no learnable offset
  Preprocess preprocess = Preprocess::None;
  PactOptions pact;  // used when preprocess == Pact
  ObserverOptions observer;  // the PTQ observer types (observer_types())
};

// Builds a quanter of quanter_types() or a PTQ observer of observer_types() (quant/observer.h).
// Throws for an unknown type (listing both lists) and for invalid options (bits outside 2..16
// named with the type, missing channels, ...).
QuanterPtr make_quanter(const std::string& type, const QuanterOptions& options = {});
// The QAT quanter types (what QuantConfig's JSON keys accept).
const std::vector<std::string>& quanter_types();

}  // namespace qslim::quant
