// Shared helpers for tests: closeness checks and the gradcheck assertion wrapper.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <source_location>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace qslim::testing {

// Fails the test with the first differing element when |a-b| > atol + rtol*|b| anywhere.
::testing::AssertionResult AllClose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-6);

// A function of tensors, as gradcheck takes it.
using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;
// Expects f's autograd gradients at `inputs` (f64 leaves) to match central finite differences;
// `what` names the case in the failure message.
void expect_gradcheck(const GradFn& f, const std::vector<Tensor>& inputs, const std::string& what = "");
// t, marked as requiring a gradient.
Tensor leaf(Tensor t);
// A seeded standard-normal f64 tensor.
Tensor randn64(const Shape& shape, uint64_t seed);

// Path of the Fashion-MNIST directory, or "" when absent (tests that need it then fail loudly).
std::string fashion_mnist_dir();

// The message of the qslim::Error that f() throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Expects f() to throw qslim::Error whose message contains every one of `parts`; a failure is
// reported at the caller's line.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts,
                  std::source_location where = std::source_location::current()) {
  const std::string msg = error_of(f);
  if (msg.empty()) {
    ADD_FAILURE_AT(where.file_name(), where.line())
        << "expected a qslim::Error mentioning '" << (parts.empty() ? "" : parts[0]) << "', got none";
    return;
  }
  for (const std::string& p : parts)
    if (msg.find(p) == std::string::npos) ADD_FAILURE_AT(where.file_name(), where.line()) << "missing '" << p << "' in: " << msg;
}

}  // namespace qslim::testing
