// Shared helpers for tests: closeness checks and the gradcheck assertion wrapper.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
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

// Asserts that `stmt` throws qslim::Error whose message contains every one of the given parts.
#define EXPECT_ERROR_HAS(stmt, ...)                                                               \
  do {                                                                                            \
    const std::string msg_ = ::qslim::testing::error_of([&] { stmt; });                           \
    ASSERT_FALSE(msg_.empty()) << "no error from " #stmt;                                         \
    for (const char* part_ : {__VA_ARGS__})                                                       \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "missing '" << part_ << "' in: " << msg_; \
  } while (0)

// Expects f() to throw qslim::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F f, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "expected qslim::Error";
  } catch (const Error& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

}  // namespace qslim::testing
