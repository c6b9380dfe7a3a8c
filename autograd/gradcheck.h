// Finite-difference gradient checking in f64 (DESIGN.md, Autograd).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qslim {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-4;
  uint64_t seed = 1234;
  bool check_accumulation = true;  // a second backward must add the same gradient again
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // first mismatch: input, element, analytical vs numerical
};

// f maps the inputs (f64 tensors; those with requires_grad are checked) to one output tensor.
// A random output gradient g is drawn; backward of f is compared against the central difference
// of dot(f(x), g) for every element of every input that requires grad.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                          const GradcheckOptions& opt = {});

}  // namespace qslim
