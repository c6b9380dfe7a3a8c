// Tensor: a cheap handle (shared_ptr<TensorImpl>) to storage + shape + strides + offset + dtype,
// plus autograd metadata. Views share storage. Differentiable view methods are implemented in
// autograd/view_ops.cpp so that views of tensors that require grad are tracked.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace qslim {

enum class Device : uint8_t { CPU, CUDA };

struct Node;
struct TensorImpl;

struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;       // null for leaves
  uint32_t output_nr = 0;              // which output of grad_fn this tensor is
  std::weak_ptr<Node> grad_accumulator;
};

struct TensorImpl {
  StoragePtr storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;       // in elements
  DType dtype = DType::F32;
  Device device = Device::CPU;
  std::unique_ptr<AutogradMeta> autograd;
  bool view = false;  // made by a differentiable view op (autograd/view_ops.cpp), not by detach()

  AutogradMeta& meta() {
    if (!autograd) autograd = std::make_unique<AutogradMeta>();
    return *autograd;
  }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // New contiguous, uninitialised tensor.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return numel_of(impl().shape); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device; }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }

  // Typed pointer to the first element (checks the dtype).
  template <typename T>
  T* data() const {
    QSLIM_CHECK(dtype() == dtype_of<T>::value, "Tensor::data: tensor has dtype ", dtype_name(dtype()),
                ", requested ", dtype_name(dtype_of<T>::value));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;
  size_t nbytes() const { return numel() * dtype_size(dtype()); }
  // The single element of a one-element tensor, converted to double.
  double item() const;
  template <typename T>
  T item() const { return static_cast<T>(item()); }
  // All elements in row-major order, converted to T (for tests and small tensors).
  template <typename T>
  std::vector<T> to_vector() const;

  // ---- views (share storage; differentiable) ----
  Tensor view(const Shape& shape) const;     // requires compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // view when possible, else copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes `dim`
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;   // broadcasting view (stride 0)
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }

  // ---- copies ----
  Tensor contiguous() const;  // this if already contiguous
  Tensor clone() const;       // always a fresh contiguous copy (differentiable)
  Tensor to(DType dtype) const;  // differentiable between floating dtypes
  Tensor detach() const;      // shares storage, no autograd history

  // ---- in-place (not tracked by autograd; bump the version counter) ----
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // src broadcast to this shape, converted to this dtype

  // ---- autograd ----
  bool requires_grad() const { return impl_ && impl_->autograd && impl_->autograd->requires_grad; }
  Tensor& set_requires_grad(bool on = true);
  bool is_leaf() const { return !impl_->autograd || !impl_->autograd->grad_fn; }
  Tensor grad() const;
  void set_grad(const Tensor& g);
  std::shared_ptr<Node> grad_fn() const { return impl_->autograd ? impl_->autograd->grad_fn : nullptr; }
  // Backpropagates from this tensor; `grad` defaults to ones for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  uint64_t version() const { return impl().storage->version(); }
  void bump_version() const { impl().storage->bump_version(); }

  std::string to_string() const;
  TensorImpl& impl() const {
    QSLIM_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// A view of `base` with explicit geometry (no autograd tracking; used by kernels and view ops).
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(dtype_of<T>::value).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace qslim
