// Tensor constructors: constants, ranges, copies of host data and seeded random tensors.
#pragma once
#include <initializer_list>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace qslim {

Tensor empty(const Shape& shape, DType dtype = DType::F32);
Tensor zeros(const Shape& shape, DType dtype = DType::F32);
Tensor ones(const Shape& shape, DType dtype = DType::F32);
Tensor full(const Shape& shape, double value, DType dtype = DType::F32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
Tensor scalar_tensor(double value, DType dtype = DType::F32);  // shape []
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::F32);
Tensor arange(int64_t end, DType dtype = DType::I64);

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape);
// Float data given as a list, e.g. tensor({1, 2, 3, 4}, {2, 2}).
Tensor tensor(std::initializer_list<double> values, const Shape& shape, DType dtype = DType::F32);

// Random tensors draw from `gen`, or from the global generator (seeded by manual_seed).
Tensor rand(const Shape& shape, DType dtype = DType::F32, Generator* gen = nullptr);   // U[0,1)
Tensor randn(const Shape& shape, DType dtype = DType::F32, Generator* gen = nullptr);  // N(0,1)
Tensor uniform(const Shape& shape, double lo, double hi, DType dtype = DType::F32, Generator* gen = nullptr);
Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype = DType::I64, Generator* gen = nullptr);
Tensor randperm(int64_t n, Generator* gen = nullptr);  // i64

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  QSLIM_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), "from_vector: ", values.size(),
              " values do not fill shape ", shape_str(shape));
  Tensor t = Tensor::empty(shape, dtype_of<T>::value);
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

}  // namespace qslim
