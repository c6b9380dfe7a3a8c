#include "core/factory.h"

#include <cmath>
#include <numeric>

namespace qslim {

Tensor empty(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype); }
Tensor zeros(const Shape& shape, DType dtype) { return full(shape, 0.0, dtype); }
Tensor ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }
Tensor full(const Shape& shape, double value, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  t.fill_(value);
  return t;
}
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype()); }
Tensor scalar_tensor(double value, DType dtype) { return full({}, value, dtype); }

Tensor arange(double start, double end, double step, DType dtype) {
  QSLIM_CHECK(step != 0.0, "arange: step must be non-zero");
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  if (n < 0) n = 0;
  Tensor t = Tensor::empty({n}, dtype);
  QSLIM_DISPATCH_ALL(dtype, "arange", [&] {
    scalar_t* p = t.data<scalar_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<scalar_t>(start + i * step);
  });
  return t;
}

Tensor arange(int64_t end, DType dtype) { return arange(0.0, static_cast<double>(end), 1.0, dtype); }

Tensor tensor(std::initializer_list<double> values, const Shape& shape, DType dtype) {
  Tensor t = from_vector(std::vector<double>(values), shape);
  return dtype == DType::F64 ? t : t.to(dtype);
}

namespace {
template <typename Draw>
Tensor fill_random(const Shape& shape, DType dtype, Draw draw) {
  Tensor t = Tensor::empty(shape, dtype);
  QSLIM_DISPATCH_ALL(dtype, "random", [&] {
    scalar_t* p = t.data<scalar_t>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<scalar_t>(draw());
  });
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, DType dtype, Generator* gen) { return uniform(shape, 0.0, 1.0, dtype, gen); }

Tensor uniform(const Shape& shape, double lo, double hi, DType dtype, Generator* gen) {
  Generator& g = gen ? *gen : global_generator();
  QSLIM_CHECK(is_floating(dtype), "uniform: dtype must be floating, got ", dtype_name(dtype));
  return fill_random(shape, dtype, [&] { return lo + (hi - lo) * g.uniform(); });
}

Tensor randn(const Shape& shape, DType dtype, Generator* gen) {
  Generator& g = gen ? *gen : global_generator();
  QSLIM_CHECK(is_floating(dtype), "randn: dtype must be floating, got ", dtype_name(dtype));
  return fill_random(shape, dtype, [&] { return g.normal(); });
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype, Generator* gen) {
  QSLIM_CHECK(high > low, "randint: empty range [", low, ", ", high, ")");
  Generator& g = gen ? *gen : global_generator();
  uint64_t span = static_cast<uint64_t>(high - low);
  return fill_random(shape, dtype, [&] { return low + static_cast<int64_t>(g.next_u64() % span); });
}

Tensor randperm(int64_t n, Generator* gen) {
  Generator& g = gen ? *gen : global_generator();
  Tensor t = Tensor::empty({n}, DType::I64);
  int64_t* p = t.data<int64_t>();
  std::iota(p, p + n, int64_t(0));
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[g.next_u64() % static_cast<uint64_t>(i + 1)]);
  return t;
}

}  // namespace qslim
