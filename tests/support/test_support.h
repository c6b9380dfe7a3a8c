// Shared helpers for tests: closeness checks and the gradcheck assertion wrapper.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "core/tensor.h"

namespace qslim::testing {

// Fails the test with the first differing element when |a-b| > atol + rtol*|b| anywhere.
::testing::AssertionResult AllClose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-6);

// Path of the Fashion-MNIST directory, or "" when absent (tests that need it then fail loudly).
std::string fashion_mnist_dir();

}  // namespace qslim::testing
