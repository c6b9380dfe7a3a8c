// Tracing a (converted) model into a dataflow graph for the INT8 engine.
//
// One forward of the model runs on an example input under NoGradGuard with a module call
// observer. Every leaf call (a module without children, or a ConvertedLayer as a whole) becomes a
// node with value ids for its inputs and output. A tensor handed to a module that no traced
// module produced, but that shares storage and element count with a traced value, is a reshape of
// it (the zoo's `flatten(1)`): it becomes a Reshape node. Anything else is untraceable and throws.
// The traced graph is then replayed and must reproduce every recorded output and the model's
// result, so a functional op the tracer cannot see never goes unnoticed.
//
// Shapes are per sample (the batch dimension, dim 0 of every value, is dropped).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace qslim::quant {

struct TracedNode {
  enum class Kind { Module, Reshape };
  Kind kind = Kind::Module;
  nn::ModulePtr module;  // Module nodes
  std::string name;      // dotted name in the model ("" for the root), or "reshape"
  std::vector<int> inputs;
  int output = -1;
};

struct TracedValue {
  Shape shape;        // per sample
  int producer = -1;  // node index; -1 for the graph input
};

struct TracedGraph {
  std::vector<TracedValue> values;
  std::vector<TracedNode> nodes;  // in execution order
  int input = 0;
  int output = -1;

  // Node indices consuming each value (a node using a value twice appears twice).
  std::vector<std::vector<int>> consumers() const;
  // Runs the graph's modules in float on x ([N, ...input shape]) and returns the output.
  Tensor replay(const Tensor& x) const;
  // One line per node: "conv1 ConvertedConv2D v0 -> v1 [6, 28, 28]".
  std::string describe() const;
};

// Traces `model` (put in eval mode by the caller) on `example` ([N, ...], N >= 1). Throws naming
// the module whose input cannot be traced, or the first module whose replayed output differs
// from the traced forward.
TracedGraph trace_model(nn::Module& model, const Tensor& example);

}  // namespace qslim::quant
