#include <gtest/gtest.h>

#include <functional>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

namespace {

using Fn = qslim::testing::GradFn;
using qslim::testing::expect_gradcheck;
using qslim::testing::leaf;
using qslim::testing::randn64;

Tensor idx(std::vector<int64_t> v, Shape s = {}) {
  if (s.empty()) s = {static_cast<int64_t>(v.size())};
  return from_vector(v, s);
}

using qslim::testing::expect_error;

}  // namespace

TEST(Index, CatValues) {
  Tensor a = tensor({1, 2, 3, 4}, {2, 2}), b = tensor({5, 6}, {1, 2}), c = tensor({7, 8, 9, 10}, {2, 2});
  Tensor r0 = cat({a, b}, 0);
  EXPECT_EQ(r0.shape(), (Shape{3, 2}));
  EXPECT_EQ(r0.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  Tensor r1 = cat({a, c, a}, -1);
  EXPECT_EQ(r1.shape(), (Shape{2, 6}));
  EXPECT_EQ(r1.to_vector<float>(), (std::vector<float>{1, 2, 7, 8, 1, 2, 3, 4, 9, 10, 3, 4}));
  // Non-contiguous input, an empty part and integer dtype.
  EXPECT_EQ(cat({a.t(), zeros({2, 0})}, 1).to_vector<float>(), (std::vector<float>{1, 3, 2, 4}));
  Tensor i = cat({idx({1, 2}), idx({3})}, 0);
  EXPECT_EQ(i.dtype(), DType::I64);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Index, StackValues) {
  Tensor a = tensor({1, 2, 3}, {3}), b = tensor({4, 5, 6}, {3});
  Tensor s0 = stack({a, b}, 0);
  EXPECT_EQ(s0.shape(), (Shape{2, 3}));
  EXPECT_EQ(s0.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  Tensor s1 = stack({a, b}, -1);
  EXPECT_EQ(s1.shape(), (Shape{3, 2}));
  EXPECT_EQ(s1.to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Index, IndexSelectValues) {
  Tensor x = arange(0, 12, 1, DType::F32).reshape({3, 4});
  EXPECT_EQ(index_select(x, 0, idx({2, 0, 2})).to_vector<float>(),
            (std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  Tensor c = index_select(x, 1, idx({3, 1}));
  EXPECT_EQ(c.shape(), (Shape{3, 2}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{3, 1, 7, 5, 11, 9}));
  EXPECT_EQ(index_select(x, -1, idx({})).shape(), (Shape{3, 0}));
  EXPECT_EQ(index_select(x.t(), 0, idx({1})).to_vector<float>(), (std::vector<float>{1, 5, 9}));
}

TEST(Index, GatherValues) {
  // PyTorch's documented example.
  Tensor x = tensor({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(gather(x, 1, idx({0, 0, 1, 0}, {2, 2})).to_vector<float>(), (std::vector<float>{1, 1, 4, 3}));
  EXPECT_EQ(gather(x, 0, idx({1, 0}, {1, 2})).to_vector<float>(), (std::vector<float>{3, 2}));
  // Index smaller than the input outside dim, and a non-contiguous input.
  Tensor y = arange(0, 12, 1, DType::F32).reshape({3, 4});
  EXPECT_EQ(gather(y, 1, idx({3, 3, 0, 2}, {2, 2})).to_vector<float>(), (std::vector<float>{3, 3, 4, 6}));
  EXPECT_EQ(gather(y.t(), 0, idx({2, 0}, {1, 2})).to_vector<float>(), (std::vector<float>{2, 4}));
}

TEST(Index, Gradchecks) {
  Tensor a = leaf(randn64({2, 3}, 1)), b = leaf(randn64({2, 1}, 2)), c = randn64({2, 2}, 3);
  expect_gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[2]}, 1); }, {a, b, c});
  Tensor d = leaf(randn64({1, 3}, 4));
  expect_gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 0); }, {a, d});
  Tensor e = leaf(randn64({2, 3}, 5));
  expect_gradcheck([](const std::vector<Tensor>& in) { return stack({in[0], in[1]}, 1); }, {a, e});
  Tensor x = leaf(randn64({4, 3, 2}, 6));
  Tensor rep = idx({3, 0, 3, 1});  // repeats accumulate
  expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], 0, rep); }, {x});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], 1, idx({2, 2})); }, {x});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], -1, idx({1, 0, 1})); }, {x});
  Tensor gi = idx({0, 2, 2, 1, 0, 0}, {3, 2, 1});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 1, gi); }, {x});
  Tensor gj = idx({3, 3, 0, 1, 1, 2, 0, 0}, {2, 2, 2});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 0, gj); }, {x});
  Tensor gk = idx({3, 0, 1, 1, 2, 3, 0, 0, 3, 2, 1, 0}, {2, 3, 2});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0].transpose(0, 2), 2, gk); }, {x});
}

TEST(Index, CatGradientSplitsBack) {
  Tensor a = leaf(zeros({2, 2}, DType::F64)), b = leaf(zeros({2, 1}, DType::F64));
  Tensor out = cat({a, b}, 1);
  out.backward(tensor({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F64));
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{3, 6}));
}

TEST(Index, Errors) {
  Tensor a = zeros({2, 3}), b = zeros({3, 4});
  expect_error([&] { cat({a, b}, 1); }, {"cat", "[2, 3]", "[3, 4]", "dim 1"});
  expect_error([&] { cat({a, zeros({2, 3, 1})}, 0); }, {"cat", "[2, 3, 1]", "[2, 3]"});
  expect_error([&] { cat({a, zeros({2, 3}, DType::F64)}, 0); }, {"cat", "f64", "f32"});
  expect_error([&] { cat({}, 0); }, {"cat", "non-empty"});
  expect_error([&] { cat({a}, 2); }, {"cat", "dim 2"});
  expect_error([&] { stack({a, b}, 0); }, {"stack", "[2, 3]", "[3, 4]"});
  expect_error([&] { index_select(a, 1, idx({0, 3})); }, {"index_select", "index 3", "dim 1", "size 3"});
  expect_error([&] { index_select(a, 0, idx({-1})); }, {"index_select", "index -1", "size 2"});
  expect_error([&] { index_select(a, 0, zeros({1})); }, {"index_select", "i64", "f32"});
  expect_error([&] { index_select(a, 0, idx({0, 1}, {1, 2})); }, {"index_select", "1-D", "[1, 2]"});
  expect_error([&] { gather(a, 1, idx({0, 5}, {2, 1})); }, {"gather", "index 5", "dim 1", "size 3"});
  expect_error([&] { gather(a, 0, idx({0, 1})); }, {"gather", "rank", "[2]", "[2, 3]"});
  expect_error([&] { gather(a, 0, idx({0, 0, 0, 0}, {1, 4})); }, {"gather", "[1, 4]", "[2, 3]", "dim 1"});
}
