#include "tests/support/test_support.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

namespace qslim::testing {

::testing::AssertionResult AllClose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure() << "shapes differ: " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    double diff = std::abs(va[i] - vb[i]);
    if (!(diff <= atol + rtol * std::abs(vb[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << va[i] << " vs " << vb[i] << " (diff " << diff
                                           << ")";
  }
  return ::testing::AssertionSuccess();
}

std::string fashion_mnist_dir() {
  if (const char* env = std::getenv("QSLIM_FASHION_MNIST")) return env;
  const char* deb = "/usr/share/datasets/fashion-mnist";
  return std::filesystem::exists(deb) ? deb : "";
}

}  // namespace qslim::testing
