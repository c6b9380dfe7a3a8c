#include "tests/support/test_support.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "autograd/gradcheck.h"
#include "core/factory.h"
#include "core/random.h"

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

void expect_gradcheck(const GradFn& f, const std::vector<Tensor>& inputs, const std::string& what) {
  GradcheckResult r = gradcheck(f, inputs);
  EXPECT_TRUE(r.ok) << what << (what.empty() ? "" : ": ") << r.message;
}

Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

Tensor randn64(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return randn(shape, DType::F64, &g);
}

std::string fashion_mnist_dir() {
  if (const char* env = std::getenv("QSLIM_FASHION_MNIST")) return env;
  const char* deb = "/usr/share/datasets/fashion-mnist";
  return std::filesystem::exists(deb) ? deb : "";
}

}  // namespace qslim::testing
