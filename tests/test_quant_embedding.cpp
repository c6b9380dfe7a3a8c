// quant_embedding: round-trip error within half a step per element (per row and per table, 8 and
// 16 bits), PaddleSlim's clipping (explicit threshold, 99.99th percentile when max|E| >= 1, none
// otherwise) by hand, lookups that dequantize only the gathered rows, save/load through the
// qslim-int8 format with a custom model builder, the float test model, and bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "autograd/ops_arith.h"
#include "core/allocator.h"
#include "core/factory.h"
#include "core/random.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "quant/dynamic_quant.h"
#include "quant/quant_embedding.h"
#include "quant/quantized_io.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;
namespace fs = std::filesystem;

namespace {

template <typename F>
void expect_error(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning " << parts.at(0);
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// indices [N, L] -> emb [N, L, dim] -> fc [N, L, classes].
class TinyTextNet : public nn::Module {
 public:
  TinyTextNet(int64_t vocab, int64_t dim, int64_t classes) {
    register_module("emb", std::make_shared<nn::Embedding>(vocab, dim));
    register_module("fc", std::make_shared<nn::Linear>(dim, classes));
  }
  using Module::forward;
  Tensor forward(const Tensor& x) override { return child("fc")(child("emb")(x)); }
  std::string type_name() const override { return "TinyTextNet"; }
};

// The builder a converted file of TinyTextNet is loaded with; the spec carries no arguments.
nn::ModulePtr build_tiny(const std::string& spec) {
  QSLIM_CHECK(spec == "tiny_text", "build_tiny: unknown model '", spec, "'");
  return std::make_shared<TinyTextNet>(50, 8, 3);
}

std::shared_ptr<nn::Embedding> embedding_with(const std::vector<float>& table, int64_t num, int64_t dim) {
  auto e = std::make_shared<nn::Embedding>(num, dim);
  NoGradGuard g;
  e->weight().copy_(from_vector(table, {num, dim}));
  return e;
}

// Quantizes `e` alone (wrapped in a Sequential) and returns the QuantEmbedding.
std::shared_ptr<quant::QuantEmbedding> quantize_alone(const std::shared_ptr<nn::Embedding>& e,
                                                      const quant::EmbeddingQuantOptions& o) {
  nn::Sequential holder{e};
  quant::quant_embedding(holder, o);
  auto q = std::dynamic_pointer_cast<quant::QuantEmbedding>(holder.child_ptr("0"));
  EXPECT_NE(q, nullptr);
  return q;
}

Tensor lookup(nn::Module& m, const Tensor& idx) {
  NoGradGuard g;
  return m(idx);
}

Tensor all_rows(int64_t num) { return arange(num, DType::I64); }

}  // namespace

// ---------------------------------------------------------------- round-trip error

TEST(QuantEmbedding, PerRowAndPerTableErrorWithinHalfAStep) {
  manual_seed(31);
  const int64_t num = 40, dim = 12;
  // Rows of very different magnitudes (max|E| < 1: no clipping), where per-row steps pay off.
  std::vector<float> table = (randn({num, dim}) * 0.2).to_vector<float>();
  for (int64_t r = 0; r < num; ++r)
    for (int64_t j = 0; j < dim; ++j) table[r * dim + j] *= static_cast<float>(r + 1) / num;
  for (int bits : {8, 16}) {
    const double qmax = std::pow(2.0, bits - 1) - 1;
    double mean_err[2];
    for (bool per_row : {true, false}) {
      SCOPED_TRACE(std::to_string(bits) + " bits, " + (per_row ? "per row" : "per table"));
      quant::EmbeddingQuantOptions o;
      o.bits = bits;
      o.per_row = per_row;
      auto q = quantize_alone(embedding_with(table, num, dim), o);
      EXPECT_FALSE(q->clip_threshold().has_value());
      EXPECT_EQ(q->buffer("weight").dtype(), bits == 8 ? DType::I8 : DType::I16);
      const std::vector<float> s = q->buffer("weight_scale").to_vector<float>();
      ASSERT_EQ(s.size(), per_row ? size_t(num) : size_t(1));
      const std::vector<float> deq = lookup(*q, all_rows(num)).to_vector<float>();
      double table_max = 0;
      for (float v : table) table_max = std::max(table_max, std::fabs(static_cast<double>(v)));
      double sum = 0;
      for (int64_t r = 0; r < num; ++r) {
        double row_max = 0;
        for (int64_t j = 0; j < dim; ++j)
          row_max = std::max(row_max, std::fabs(static_cast<double>(table[r * dim + j])));
        const double step = per_row ? row_max / qmax : table_max / qmax;
        ASSERT_NEAR(s[per_row ? r : 0], step, step * 1e-6);
        for (int64_t j = 0; j < dim; ++j) {
          const double v = table[r * dim + j], err = std::fabs(deq[r * dim + j] - v);
          // Half a step, plus the f32 rounding of q * s (two ulps of the value; visible at 16 bits).
          ASSERT_LE(err, step / 2 + 2.4e-7 * std::fabs(v)) << "row " << r << " col " << j;
          sum += err;
        }
      }
      mean_err[per_row ? 0 : 1] = sum / (num * dim);
    }
    // Small rows keep their own resolution: per-row steps beat one step for the table.
    EXPECT_LT(mean_err[0], 0.7 * mean_err[1]) << bits << " bits";
  }
}

// ---------------------------------------------------------------- clipping

TEST(QuantEmbedding, ExplicitThresholdClipsByHand) {
  // Clipped to 0.5: [-0.5, -0.4, 0.1, 0.5]; s = 0.5/127; q = -127, round(-101.6), round(25.4), 127.
  auto emb = embedding_with({-2.0f, -0.4f, 0.1f, 0.7f}, 2, 2);
  quant::EmbeddingQuantOptions o;
  o.threshold = 0.5;
  o.per_row = false;
  auto q = quantize_alone(emb, o);
  EXPECT_EQ(q->clip_threshold(), std::optional<double>(0.5));
  EXPECT_EQ(q->buffer("weight").to_vector<int64_t>(), (std::vector<int64_t>{-127, -102, 25, 127}));
  EXPECT_EQ(q->buffer("weight_scale").to_vector<float>(), (std::vector<float>{0.5f / 127}));
  // Per row: row 0 [-0.5, -0.4] s = 0.5/127; row 1 [0.1, 0.5] s = 0.5/127 as well.
  o.per_row = true;
  q = quantize_alone(embedding_with({-2.0f, -0.4f, 0.1f, 0.7f}, 2, 2), o);
  EXPECT_EQ(q->buffer("weight").to_vector<int64_t>(), (std::vector<int64_t>{-127, -102, 25, 127}));
}

TEST(QuantEmbedding, PercentileClipWhenMaxIsAtLeastOne) {
  // |E| = 0.001, 0.002, ..., 10.000 (signs alternating): numpy.percentile(|E|, 99.99) interpolates
  // at position 0.9999 * 9999 = 9998.0001 between 9.999 and 10.0: T = 9.9990001.
  const int64_t n = 10000;
  std::vector<float> table(n);
  for (int64_t k = 0; k < n; ++k) table[k] = static_cast<float>((k % 2 ? -1 : 1) * (k + 1) * 0.001);
  std::vector<float> shuffled = table;
  std::reverse(shuffled.begin(), shuffled.end());
  const double t = 9.999 + (10.0 - 9.999) * 0.0001;
  EXPECT_NEAR(quant::abs_percentile(from_vector(shuffled, {100, 100}), 99.99), t, 1e-6);
  auto q = quantize_alone(embedding_with(shuffled, 100, 100), {});
  ASSERT_TRUE(q->clip_threshold().has_value());
  EXPECT_NEAR(*q->clip_threshold(), t, 1e-6);
  // Row 0 of the reversed table holds -10.0 (clipped to -T) and 9.999 (inside): s = T / 127.
  const std::vector<float> row0 = lookup(*q, from_vector(std::vector<int64_t>{0}, {1})).to_vector<float>();
  EXPECT_NEAR(q->buffer("weight_scale").to_vector<float>()[0], t / 127, 1e-6);
  EXPECT_NEAR(row0[0], -t, 1e-5);
  EXPECT_EQ(q->buffer("weight").to_vector<int64_t>()[0], -127);
  // Below 1 nothing is clipped: scale the table by 0.05 (max 0.5).
  for (float& v : shuffled) v *= 0.05f;
  auto small = quantize_alone(embedding_with(shuffled, 100, 100), {});
  EXPECT_FALSE(small->clip_threshold().has_value());
  EXPECT_NEAR(small->buffer("weight_scale").to_vector<float>()[0], 0.5 / 127, 1e-9);
}

TEST(QuantEmbedding, AbsPercentileMatchesSortedInterpolation) {
  manual_seed(32);
  const Tensor x = randn({997});
  std::vector<double> a = x.to_vector<double>();
  for (double& v : a) v = std::fabs(v);
  std::sort(a.begin(), a.end());
  for (double pct : {0.0, 12.5, 50.0, 99.0, 99.99, 100.0}) {
    const double pos = pct / 100 * (a.size() - 1);
    const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, a.size() - 1);
    EXPECT_NEAR(quant::abs_percentile(x, pct), a[lo] + (a[hi] - a[lo]) * (pos - lo), 1e-12) << pct;
  }
  expect_error([&] { quant::abs_percentile(x, 101); }, {"percentile must be in [0, 100]"});
}

// ---------------------------------------------------------------- lookups

TEST(QuantEmbedding, ForwardGathersDequantizedRows) {
  manual_seed(33);
  auto emb = std::make_shared<nn::Embedding>(10, 5, /*padding_idx=*/2);
  auto q = quantize_alone(emb, {});
  const std::vector<int64_t> iq = q->buffer("weight").to_vector<int64_t>();
  const std::vector<float> s = q->buffer("weight_scale").to_vector<float>();
  const std::vector<int64_t> ids = {3, 0, 3, 9, 2, 1};
  const Tensor out = lookup(*q, from_vector(ids, {2, 3}));
  EXPECT_EQ(out.shape(), Shape({2, 3, 5}));
  std::vector<float> ref;
  for (int64_t id : ids)
    for (int64_t j = 0; j < 5; ++j) ref.push_back(static_cast<float>(iq[id * 5 + j]) * s[id]);
  EXPECT_EQ(out.to_vector<float>(), ref);
  // The padding row stays exactly zero; i32 indices give the same rows.
  for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(out.to_vector<float>()[4 * 5 + j], 0.0f);
  EXPECT_TRUE(AllClose(lookup(*q, from_vector(ids, {2, 3}).to(DType::I32)), out, 0, 0));
  EXPECT_EQ(q->padding_idx(), 2);
  expect_error(
      [&] {
        lookup(*q, from_vector(std::vector<int64_t>{1, 10}, {2}));
      },
      {"index 10 at position 1", "10 rows"});
  expect_error([&] { lookup(*q, ones({2})); }, {"indices must be i64", "f32"});
}

// A lookup of a few ids must not build the float table: with the allocator's cache emptied, the
// lookup may take (in use or cached) little more than its output. Dequantizing the whole table
// inside the same window is caught by the same measure.
TEST(QuantEmbedding, OnlyGatheredRowsAreDequantized) {
  manual_seed(34);
  const int64_t num = 50000, dim = 64;  // f32 table 12.8 MB, int8 table 3.2 MB
  auto q = quantize_alone(std::make_shared<nn::Embedding>(num, dim), {});
  const Tensor ids = from_vector(std::vector<int64_t>{7, 49999, 123, 7}, {4});
  auto footprint = [] {
    const AllocatorStats s = cpu_allocator_stats();
    return static_cast<int64_t>(s.bytes_in_use + s.bytes_cached);
  };
  cpu_empty_cache();
  int64_t before = footprint();
  Tensor out = lookup(*q, ids);
  const int64_t lookup_growth = footprint() - before;
  EXPECT_LT(lookup_growth, 64 * 1024) << "a lookup of 4 rows allocated " << lookup_growth << " bytes";
  cpu_empty_cache();
  before = footprint();
  Tensor whole = q->dequantized_table();
  EXPECT_GE(footprint() - before, num * dim * 4) << "the footprint measure misses a full-table dequantization";
  for (int64_t k = 0; k < 4; ++k) {
    const int64_t id = ids.to_vector<int64_t>()[k];
    EXPECT_TRUE(AllClose(out.select(0, k), whole.select(0, id), 0, 0));
  }
}

// ---------------------------------------------------------------- models and files

TEST(QuantEmbedding, SaveLoadWithACustomBuilderAndTheTestModel) {
  const fs::path d = fs::temp_directory_path() / ("qslim_qemb_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  manual_seed(35);
  auto fp32 = build_tiny("tiny_text");
  {
    NoGradGuard g;
    Tensor w = std::static_pointer_cast<nn::Embedding>(fp32->child_ptr("emb"))->weight();
    w.copy_(w * 3.0);  // max|E| >= 1: clipped at the 99.99th percentile
  }
  auto model = build_tiny("tiny_text");
  model->load_state_dict(fp32->state_dict());
  const auto done = quant::quant_embedding(*model, {});
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].name, "emb");
  ASSERT_TRUE(done[0].clip_threshold.has_value());
  quant::DynamicOptions dyn;
  dyn.weight_bits = 16;
  quant::quant_post_dynamic(*model, dyn);  // the Linear too: both kinds in one file
  const Tensor ids = randint(0, 50, {4, 6});
  const fs::path file = d / "tiny.safetensors";
  quant::save_converted(file.string(), *model, dyn.to_quant_config(), "tiny_text", {{"note", "test"}}, build_tiny);
  auto loaded = quant::load_converted(file.string(), build_tiny);
  EXPECT_TRUE(AllClose(lookup(*loaded, ids), lookup(*model, ids), 0, 0));
  auto* qe = dynamic_cast<quant::QuantEmbedding*>(&loaded->child("emb"));
  ASSERT_NE(qe, nullptr);
  EXPECT_EQ(qe->clip_threshold(), done[0].clip_threshold);
  EXPECT_TRUE(qe->per_row());
  EXPECT_EQ(qe->buffer("weight").dtype(), DType::I8);
  EXPECT_EQ(loaded->child("fc").type_name(), "DynamicQuantLinear");
  EXPECT_EQ(quant::converted_metadata(file.string()).at("note"), "test");
  // Without the builder the zoo does not know the spec.
  expect_error([&] { quant::load_converted(file.string()); }, {file.string(), "tiny_text"});
  expect_error(
      [&] {
        quant::save_converted(file.string(), *model, dyn.to_quant_config(), "tiny_text", {{"layers", "[]"}},
                              build_tiny);
      },
      {"extra metadata may not set 'layers'"});
  // The float test model: dequantized table and weights under the float names.
  auto twin = build_tiny("tiny_text");
  twin->load_state_dict(quant::dequantized_state_dict(*model), /*strict=*/true);
  EXPECT_TRUE(AllClose(lookup(*twin, ids), lookup(*model, ids), 0, 0));
  fs::remove_all(d);
}

TEST(QuantEmbedding, SelectionAndBadInput) {
  auto model = build_tiny("tiny_text");
  quant::EmbeddingQuantOptions o;
  o.bits = 4;
  expect_error([&] { quant::quant_embedding(*model, o); }, {"bits must be 8 or 16", "got 4"});
  o = {};
  o.threshold = -1.0;
  expect_error([&] { quant::quant_embedding(*model, o); }, {"threshold must be positive"});
  o = {};
  o.not_quant_pattern = {"emb"};
  expect_error([&] { quant::quant_embedding(*model, o); }, {"no Embedding to quantize", "not_quant_pattern: emb"});
  EXPECT_EQ(model->child("emb").type_name(), "Embedding");
  quant::quant_embedding(*model, {});
  EXPECT_EQ(model->child("emb").type_name(), "QuantEmbedding");
  EXPECT_EQ(model->child("fc").type_name(), "Linear");
  expect_error([&] { quant::quant_embedding(*model, {}); }, {"no Embedding to quantize", "already quantized: emb"});
  expect_error([] { quant::QuantEmbedding(4, 2, -1, 12, true); }, {"bits must be 8 or 16"});
  auto lone = std::make_shared<quant::QuantEmbedding>(4, 2, -1, 8, true);
  expect_error([&] { lone->quantize_table(ones({4, 3}), std::nullopt); }, {"table [4, 3]", "[4, 2]"});
  auto nan_table = ones({4, 2});
  nan_table.data<float>()[3] = std::nanf("");
  expect_error([&] { lone->quantize_table(nan_table, std::nullopt); }, {"only finite tables"});
}
