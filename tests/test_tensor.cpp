#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/kernels.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;

TEST(Tensor, ShapeStridesAndViews) {
  Tensor t = arange(0, 24, 1, DType::F32).reshape({2, 3, 4});
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_DOUBLE_EQ(tr.contiguous().to_vector<float>()[1], 12.0);  // tr[0,0,1] = t[1,0,0]
  Tensor n = t.narrow(1, 1, 2);
  EXPECT_EQ(n.shape(), (Shape{2, 2, 4}));
  EXPECT_EQ(n.to_vector<float>()[0], 4.0f);
  Tensor s = t.slice(2, 0, 4, 2);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22}));
  EXPECT_EQ(t.select(0, 1).shape(), (Shape{3, 4}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3, 4}));
  EXPECT_EQ(t.unsqueeze(-1).squeeze(-1).shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.permute({2, 0, 1}).shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(t.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(t.view({-1, 4}).shape(), (Shape{6, 4}));
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = zeros({3, 4});
  t.narrow(0, 1, 1).fill_(5);
  EXPECT_EQ(t.to_vector<float>()[4], 5.0f);
  EXPECT_EQ(t.to_vector<float>()[3], 0.0f);
}

TEST(Tensor, ExpandBroadcasts) {
  Tensor t = tensor({1, 2, 3}, {3, 1});
  Tensor e = t.expand({3, 2});
  EXPECT_EQ(e.contiguous().to_vector<float>(), (std::vector<float>{1, 1, 2, 2, 3, 3}));
  EXPECT_THROW(t.expand({2, 2}), Error);
}

TEST(Tensor, DtypeConversionAndItem) {
  Tensor t = tensor({1.7, -2.2}, {2});
  Tensor i = t.to(DType::I32);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{1, -2}));
  EXPECT_EQ(i.dtype(), DType::I32);
  EXPECT_THROW(t.item(), Error);
  EXPECT_DOUBLE_EQ(scalar_tensor(3.5).item(), 3.5);
  EXPECT_THROW(t.data<double>(), Error);
}

TEST(Tensor, BadViewsThrowWithShapes) {
  Tensor t = zeros({2, 3});
  try {
    t.view({4, 2});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.transpose(0, 1).view({6}), Error);
  EXPECT_EQ(t.transpose(0, 1).reshape({6}).shape(), (Shape{6}));
  EXPECT_THROW(t.narrow(1, 2, 2), Error);
  EXPECT_THROW(t.permute({0, 0}), Error);
}

TEST(Tensor, SeededRandomIsReproducible) {
  Generator g1(42), g2(42);
  EXPECT_EQ(randn({5}, DType::F32, &g1).to_vector<float>(), randn({5}, DType::F32, &g2).to_vector<float>());
  Tensor p = randperm(10, &g1);
  auto v = p.to_vector<int64_t>();
  std::sort(v.begin(), v.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(v[i], i);
  Tensor u = rand({1000});
  for (float x : u.to_vector<float>()) {
    EXPECT_GE(x, 0.0f);
    EXPECT_LT(x, 1.0f);
  }
}

TEST(Tensor, GeneratorStateRoundTrips) {
  Generator g(7);
  g.normal();
  std::string st = g.state();
  double a = g.normal(), b = g.uniform();
  Generator h(0);
  h.set_state(st);
  EXPECT_EQ(h.normal(), a);
  EXPECT_EQ(h.uniform(), b);
}

TEST(Tensor, CachingAllocatorReusesBlocks) {
  { Tensor a = Tensor::empty({1 << 20}); }
  auto before = cpu_allocator_stats();
  { Tensor b = Tensor::empty({1 << 20}); }
  auto after = cpu_allocator_stats();
  EXPECT_EQ(after.cache_hits, before.cache_hits + 1);
}

TEST(Tensor, PrintingShowsShapeAndValues) {
  std::string s = tensor({1, 2, 3, 4}, {2, 2}).to_string();
  EXPECT_NE(s.find("shape=[2, 2]"), std::string::npos);
  EXPECT_NE(s.find("[[1, 2],"), std::string::npos) << s;
}

TEST(Tensor, IntegerScalarKernelsRejectFractionalScalars) {
  Tensor i = from_vector(std::vector<int32_t>{1, 2, 3}, {3});
  EXPECT_EQ(kernels::add_scalar(i, 2.0).to_vector<int32_t>(), (std::vector<int32_t>{3, 4, 5}));
  EXPECT_EQ(kernels::mul_scalar(i, -3.0).to_vector<int32_t>(), (std::vector<int32_t>{-3, -6, -9}));
  qslim::testing::expect_error([&] { kernels::add_scalar(i, 0.5); }, {"add_scalar", "0.5", "i32"});
  qslim::testing::expect_error([&] { kernels::mul_scalar(i, 1.5); }, {"mul_scalar", "1.5", "i32"});
  qslim::testing::expect_error([&] { kernels::scale_inplace(i, 0.25); }, {"scale_", "0.25"});
  Tensor f = from_vector(std::vector<float>{1, 2}, {2});
  EXPECT_EQ(kernels::add_scalar(f, 0.5).to_vector<float>(), (std::vector<float>{1.5f, 2.5f}));
}
