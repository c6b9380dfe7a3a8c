// PTQ observers (quant/observer.h): thresholds against hand-computed values and naive reference
// implementations written here, the mergeable histogram, the factory and the calibrate/finalize
// contract, plus the cost of a histogram forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "quant/abs_histogram.h"
#include "quant/absmax_observer.h"
#include "quant/avg_observer.h"
#include "quant/channel_wise_weight_observers.h"
#include "quant/fake_quant.h"
#include "quant/hist_observer.h"
#include "quant/kl_observer.h"
#include "quant/observer.h"
#include "quant/quanter_factory.h"
#include "quant/search_observer.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::quant;
using qslim::testing::AllClose;

using qslim::testing::error_of;

namespace {

Tensor vec(const std::vector<float>& v) { return from_vector(v, {static_cast<int64_t>(v.size())}); }

// `n` copies of value v appended to out.
void repeat(std::vector<float>& out, int n, float v) { out.insert(out.end(), n, v); }

double scale_of(const Quanter& q) { return q.quant_params().scales()[0]; }

// Normal samples (seeded), optionally with a few far outliers of both signs.
std::vector<float> normal_data(int n, uint64_t seed, double sigma = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

// The reference quantize-dequantize, from QUANT_SPEC §1 (half-even rounding).
double ref_qd(double v, double s, int64_t qmin, int64_t qmax) {
  double q = std::nearbyint(v / s);
  q = std::min<double>(std::max<double>(q, static_cast<double>(qmin)), static_cast<double>(qmax));
  return q * s;
}

std::vector<double> ref_factors() {
  std::vector<double> k;
  for (int j = 0; j <= 35; ++j) k.push_back(0.30 + 0.02 * j);
  return k;
}

// Brute force over the raw values: T = k * max|x| minimising mse or emd (first on ties).
double ref_search(const std::vector<double>& x, bool emd, const QuantGrid& g) {
  double m = 0;
  for (double v : x) m = std::max(m, std::fabs(v));
  const double n = static_cast<double>(x.size());
  double best = std::numeric_limits<double>::infinity(), best_t = m;
  for (double k : ref_factors()) {
    const double t = k * m, s = t / static_cast<double>(g.qmax());
    double loss = 0;
    if (!emd) {
      for (double v : x) loss += (v - ref_qd(v, s, g.qmin(), g.qmax())) * (v - ref_qd(v, s, g.qmin(), g.qmax()));
      loss /= n;
    } else {
      double m0 = 0, m1 = 0;
      for (double v : x) {
        m0 += v;
        m1 += ref_qd(v, s, g.qmin(), g.qmax());
      }
      m0 /= n;
      m1 /= n;
      double v0 = 0, v1 = 0;
      for (double v : x) {
        v0 += (v - m0) * (v - m0);
        const double q = ref_qd(v, s, g.qmin(), g.qmax());
        v1 += (q - m1) * (q - m1);
      }
      loss = std::fabs(m0 - m1) + std::fabs(std::sqrt(v0 / n) - std::sqrt(v1 / n));
    }
    if (loss < best) {
      best = loss;
      best_t = t;
    }
  }
  return best_t;
}

// TensorRT's KL search written naively from its definition: explicit P and Q vectors per cut.
KlCut naive_kl(const std::vector<double>& h, int64_t start, int64_t levels) {
  const int64_t bins = static_cast<int64_t>(h.size());
  KlCut best;
  double best_kl = std::numeric_limits<double>::infinity();
  for (int64_t i = start; i <= bins; ++i) {
    std::vector<double> p(h.begin(), h.begin() + i);
    for (int64_t j = i; j < bins; ++j) p[i - 1] += h[j];
    if (p[i - 1] == 0) continue;
    std::vector<double> q(i, 0.0);
    const int64_t groups = std::min(levels, i);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t j0 = g * i / groups, j1 = (g + 1) * i / groups;
      double mass = 0;
      int nonempty = 0;
      for (int64_t j = j0; j < j1; ++j) {
        mass += h[j];
        nonempty += p[j] != 0;
      }
      for (int64_t j = j0; j < j1; ++j) q[j] = p[j] != 0 ? mass / nonempty : 0.0;
    }
    double ps = 0, qs = 0;
    for (int64_t j = 0; j < i; ++j) {
      ps += p[j];
      qs += q[j];
    }
    double kl = 0;
    for (int64_t j = 0; j < i; ++j) {
      if (p[j] == 0) continue;
      const double pn = p[j] / ps, qn = qs > 0 ? q[j] / qs : 0.0;
      kl += pn * std::log(pn / std::max(qn, kKlFloor));
    }
    if (kl < best_kl) {
      best_kl = kl;
      best.cut = i;
      best.kl = kl;
    }
  }
  return best;
}

QuanterOptions opts_bins(int64_t bins) {
  QuanterOptions o;
  o.observer.bins = bins;
  return o;
}

}  // namespace

// ---- abs_max / avg ----

TEST(AbsmaxObserver, MaxOverThreeBatches) {
  AbsmaxObserver ob;
  EXPECT_EQ(ob.type_name(), "AbsmaxObserver");
  ob.forward(vec({1.f, -2.f, 0.5f}));
  ob.forward(from_vector(std::vector<float>{0.1f, -5.f, 3.f, 4.f}, {1, 2, 2, 1}));  // rank 4
  ob.forward(vec({3.f, -1.f}));
  EXPECT_EQ(ob.batches_seen(), 3);
  EXPECT_FALSE(ob.finalized());
  EXPECT_NEAR(scale_of(ob), 5.0 / 127, 1e-7);  // signed activations: qmax 127
  EXPECT_TRUE(ob.finalized());
  EXPECT_NEAR(ob.threshold(), 5.0, 1e-6);
}

TEST(AVGObserver, MeanOfPerSampleMaxima) {
  AVGObserver ob;
  // Batch 1: samples' abs-maxes 1 and 4 -> 2.5. Batch 2 ([3, 2]): 2, 6, 1 -> 3. T = 2.75.
  ob.forward(from_vector(std::vector<float>{1.f, -0.5f, 2.f, -4.f}, {2, 2}));
  ob.forward(from_vector(std::vector<float>{-2.f, 1.f, 0.f, 6.f, 1.f, -0.25f}, {3, 2}));
  EXPECT_NEAR(ob.threshold(), 2.75, 1e-6);  // via the f32 step
  EXPECT_NEAR(scale_of(ob), 2.75 / 127, 1e-9);
}

// ---- the histogram ----

TEST(AbsHistogram, CountsAndExactDoublingRebin) {
  AbsHistogram h(10, false, "test");
  h.add(vec({0.25f, -2.75f, 5.f, 0.f}));  // range 5, width 0.5: bins 0, 5, 9, 0
  EXPECT_DOUBLE_EQ(h.range(), 5.0);
  EXPECT_EQ(h.counts(), (std::vector<double>{2, 0, 0, 0, 0, 1, 0, 0, 0, 1}));
  // Range doubles to 10: old bins pair up exactly (0+1 -> 0, 4+5 -> 2, 8+9 -> 4), then the new values.
  h.add(vec({10.f, 3.2f, std::nanf("")}));
  EXPECT_DOUBLE_EQ(h.range(), 10.0);
  EXPECT_EQ(h.counts(), (std::vector<double>{2, 0, 1, 1, 1, 0, 0, 0, 0, 1}));
  EXPECT_EQ(h.count(), 6);  // the NaN is skipped
  EXPECT_NE(error_of([&] { h.add(vec({1.f, INFINITY})); }).find("test: input [2] holds an infinite value"),
            std::string::npos);
}

TEST(AbsHistogram, SplitSignAndF64) {
  AbsHistogram h(4, true, "test");
  h.add(from_vector(std::vector<double>{-1.0, 0.9, -0.1, 0.0, -0.0}, {5}));  // width 0.25
  EXPECT_EQ(h.counts(), (std::vector<double>{2, 0, 0, 1}));
  EXPECT_EQ(h.negative_counts(), (std::vector<double>{1, 0, 0, 1}));
  EXPECT_EQ(h.abs_counts(), (std::vector<double>{3, 0, 0, 2}));
}

TEST(AbsHistogram, RebinKeepsTotalAndShape) {
  // Batch 1 uniform on [0, 1), batch 2 uniform on [0, 1.7): the re-binned histogram must match a
  // one-pass histogram of both batches over [0, max] up to the spreading of one old bin.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<float> a(20000), b(20000);
  for (float& v : a) v = static_cast<float>(u(rng));
  for (float& v : b) v = static_cast<float>(-1.7 * u(rng));
  const int64_t bins = 256;
  AbsHistogram h(bins, false, "test");
  h.add(vec(a));
  const double old_width = h.bin_width();
  h.add(vec(b));
  ASSERT_GT(h.range(), 1.6);
  EXPECT_EQ(h.total(), 40000.0);
  double sum = 0;
  for (double c : h.counts()) sum += c;
  EXPECT_NEAR(sum, 40000.0, 1e-6);
  // Direct histogram of both batches over the final range.
  std::vector<double> direct(bins, 0.0);
  for (const auto* v : {&a, &b})
    for (float x : *v)
      direct[std::min<int64_t>(bins - 1, static_cast<int64_t>(std::fabs(x) / h.range() * bins))] += 1;
  // Cumulative counts agree within about one old bin's count (20000 / 256 ~ 78), everywhere.
  double ca = 0, cd = 0, worst = 0;
  for (int64_t i = 0; i < bins; ++i) {
    ca += h.counts()[i];
    cd += direct[i];
    worst = std::max(worst, std::fabs(ca - cd));
  }
  EXPECT_LT(worst, 20000.0 / bins * 1.5) << "old width " << old_width;
  // The shape holds: over [0, 1) both batches count, beyond only batch 2, so the mean density of
  // bins 0..99 ([0, 0.66)) over that of bins 160..255 ([1.06, 1.7)) is (1 + 1/1.7) / (1/1.7) = 2.7.
  double lo = 0, hi = 0;
  for (int64_t i = 0; i < 100; ++i) lo += h.counts()[i] / 100;
  for (int64_t i = 160; i < bins; ++i) hi += h.counts()[i] / 96;
  EXPECT_NEAR(lo / hi, 2.7, 0.1);
}

// ---- hist ----

TEST(HistObserver, PercentileBinByHand) {
  // 10 bins over [0, 10] (width 1): 50 values in bin 0, 30 in bin 2, 15 in bin 5, 4 in bin 7, 1 at
  // -10 (bin 9). Cumulative shares 0.50, 0.50, 0.80, 0.80, 0.80, 0.95, 0.95, 0.99, 0.99, 1.00.
  std::vector<float> v;
  repeat(v, 50, 0.5f);
  repeat(v, 30, -2.5f);
  repeat(v, 15, 5.5f);
  repeat(v, 4, 7.5f);
  repeat(v, 1, -10.f);
  const double want[][2] = {{0.5, 0.5}, {0.9, 5.5}, {0.95, 5.5}, {0.96, 7.5}, {0.99, 7.5}, {1.0, 9.5}};
  for (const auto& [percent, t] : want) {
    QuanterOptions o = opts_bins(10);
    o.observer.hist_percent = percent;
    HistObserver ob(o);
    ob.forward(vec(std::vector<float>(v.begin(), v.begin() + 60)));  // two batches
    ob.forward(vec(std::vector<float>(v.begin() + 60, v.end())));
    EXPECT_NEAR(ob.threshold(), t, 1e-5) << "hist_percent " << percent;
  }
  QuanterOptions bad;
  bad.observer.hist_percent = 1.5;
  EXPECT_NE(error_of([&] { HistObserver x(bad); }).find("HistObserver: hist_percent must be in (0, 1]"),
            std::string::npos);
}

TEST(HistObserver, UnsignedGridUsesItsQmax) {
  QuanterOptions o = opts_bins(10);
  o.grid = GridKind::Unsigned;
  o.observer.hist_percent = 1.0;
  HistObserver ob(o);
  ob.forward(vec({0.f, 10.f}));
  EXPECT_NEAR(scale_of(ob), 9.5 / 255, 1e-8);
}

// ---- KL ----

TEST(KLObserver, MatchesNaiveReferenceAndCutsAtTheBulkEdge) {
  // Dense normal bulk (|x| up to ~4.5) plus a few far outliers at +-40: clipping the outliers
  // costs little divergence, while quantizing the bulk with ~127 levels over [0, 40] is coarse, so
  // the cut must land near the bulk's edge, far below the outliers.
  std::vector<float> x = normal_data(100000, 11);
  for (int i = 0; i < 5; ++i) x[i * 1000] = (i % 2 ? -40.f : 40.f);
  KLObserver ob;  // 2048 bins, TensorRT start 128, 8-bit signed: 127 levels
  ob.forward(vec(std::vector<float>(x.begin(), x.begin() + 50000)));
  ob.forward(vec(std::vector<float>(x.begin() + 50000, x.end())));
  const AbsHistogram& h = ob.histogram();
  ASSERT_DOUBLE_EQ(h.range(), 40.0);
  const KlCut ref = naive_kl(h.counts(), 128, 127);
  const KlCut got = kl_optimal_cut(h.counts(), 128, 127);
  EXPECT_EQ(got.cut, ref.cut);
  EXPECT_NEAR(got.kl, ref.kl, 1e-9 * std::fabs(ref.kl) + 1e-12);
  EXPECT_NEAR(ob.threshold(), (ref.cut + 0.5) * 40.0 / 2048, 1e-5);
  double bulk = 0;
  for (float v : x)
    if (std::fabs(v) < 10) bulk = std::max(bulk, static_cast<double>(std::fabs(v)));
  std::printf("KL cut %lld: T = %.4f (bulk max %.4f, outliers at 40)\n", static_cast<long long>(ref.cut),
              ob.threshold(), bulk);
  EXPECT_GT(ob.threshold(), 0.5 * bulk);
  EXPECT_LT(ob.threshold(), 1.5 * bulk);
}

TEST(KLObserver, ExactZerosDoNotMoveTheCut) {
  // A post-ReLU tensor: |normal| values plus three times as many exact zeros. The zeros are exact
  // on every grid, so the cut must be the one of the non-zero values alone (same range, same bins).
  std::vector<float> pos = normal_data(40000, 13);
  for (float& v : pos) v = std::fabs(v) + 1e-3f;
  std::vector<float> relu = pos;
  relu.insert(relu.end(), 120000, 0.f);
  KLObserver a, b;
  a.forward(vec(pos));
  b.forward(vec(relu));
  EXPECT_EQ(b.histogram().zeros(), 120000);
  EXPECT_EQ(a.histogram().zeros(), 0);
  EXPECT_DOUBLE_EQ(b.histogram().counts()[0], a.histogram().counts()[0] + 120000);
  EXPECT_DOUBLE_EQ(b.threshold(), a.threshold());
  EXPECT_GT(b.threshold(), 0.4 * b.histogram().range()) << "zeros dragged the cut towards 0";
}

TEST(KLObserver, SpikyInputIsNotCutAtTheSpike) {
  // A normalised image: 60% background pixels at exactly -0.8, the rest spread up to 2.0. Unguarded,
  // KL cuts at the spike and clips every bright pixel; the guard allows at most 0.1% clipped.
  std::vector<float> x;
  for (int i = 0; i < 60000; ++i) x.push_back(-0.8f);
  for (int i = 0; i < 40000; ++i) x.push_back(-0.8f + 2.8f * static_cast<float>(i + 1) / 40000.f);
  KLObserver guarded;
  guarded.forward(vec(x));
  const double t = guarded.threshold();
  int64_t clipped = 0;
  for (float v : x) clipped += std::fabs(v) > t;
  EXPECT_LE(clipped, 100) << "T = " << t;
  QuanterOptions o;
  o.observer.kl_max_clipped = 1.0;  // no guard: the TensorRT search alone
  KLObserver unguarded(o);
  unguarded.forward(vec(x));
  EXPECT_LT(unguarded.threshold(), 1.0) << "the unguarded search no longer cuts at the spike; update this test";
  std::printf("spiky input: guarded T = %.3f, unguarded T = %.3f\n", t, unguarded.threshold());
  o.observer.kl_max_clipped = -0.5;
  qslim::testing::expect_error([&] { KLObserver bad(o); }, {"kl_max_clipped", "[0, 1]"});
}

TEST(KLObserver, PaddleStartAndFallbacks) {
  std::vector<float> x = normal_data(20000, 12);
  x[0] = 40.f;
  QuanterOptions o;
  o.observer.kl_start = KlStart::Paddle;  // bins / 2 - 1 = 1023
  KLObserver paddle(o);
  paddle.forward(vec(x));
  const KlCut ref = naive_kl(paddle.histogram().counts(), 1023, 127);
  ASSERT_GE(ref.cut, 1023);
  EXPECT_NEAR(paddle.threshold(), (ref.cut + 0.5) * 40.0 / 2048, 1e-5);
  // Fewer bins than the TensorRT start: abs-max.
  KLObserver few(opts_bins(100));
  few.forward(vec(x));
  EXPECT_NEAR(few.threshold(), 40.0, 1e-5);
  // 16 bits: more levels than bins, so Q only differs from P by the folded clipped mass: no clipping.
  QuanterOptions o16;
  o16.bits = 16;
  KLObserver wide(o16);
  wide.forward(vec(x));
  EXPECT_NEAR(wide.threshold(), (2048 + 0.5) * 40.0 / 2048, 1e-4);
}

// ---- mse / emd ----

TEST(SearchObserver, FactorGrid) {
  const std::vector<double> k = search_factors(0.30, 0.02, "test");
  ASSERT_EQ(k.size(), 36u);
  EXPECT_DOUBLE_EQ(k.back(), 1.0);
  EXPECT_NEAR(k[1], 0.32, 1e-12);
  EXPECT_NE(error_of([] { search_factors(0.0, 0.02, "MSEObserver"); }).find("MSEObserver: search_min"),
            std::string::npos);
}

// Data whose losses have an interior optimum on the k grid: a normal bulk, 4 bits, and a few
// outliers that set max|x| far out.
std::vector<float> search_data(uint64_t seed) {
  std::vector<float> x = normal_data(30000, seed);
  x[17] = 6.f;
  x[4242] = -5.5f;
  return x;
}

void expect_search_matches_brute_force(SearchLoss loss, const std::vector<float>& x, int bits) {
  QuanterOptions o;
  o.bits = bits;
  o.observer.bins = 2048;
  SearchObserver ob(o, loss);
  const size_t third = x.size() / 3;
  ob.forward(vec(std::vector<float>(x.begin(), x.begin() + third)));
  ob.forward(vec(std::vector<float>(x.begin() + third, x.begin() + 2 * third)));
  ob.forward(from_vector(std::vector<float>(x.begin() + 2 * third, x.end()),
                         {1, static_cast<int64_t>(x.size() - 2 * third), 1}));
  const std::vector<double> xd(x.begin(), x.end());
  const double want = ref_search(xd, loss == SearchLoss::Emd, ob.grid());
  double m = 0;
  for (double v : xd) m = std::max(m, std::fabs(v));
  std::printf("%s bits %d: T = %.5f (brute force %.5f, k = %.2f, max %.3f)\n", ob.type_name().c_str(), bits,
              ob.threshold(), want, want / m, m);
  EXPECT_GT(want, 0.30 * m + 1e-9) << "optimum on the grid's edge: the data does not test the search";
  EXPECT_LT(want, 1.00 * m - 1e-9) << "optimum on the grid's edge: the data does not test the search";
  // Bin-centre evaluation moves each value by at most half a bin: allow one bin width.
  EXPECT_NEAR(ob.threshold(), want, m / 2048) << "M = " << m;
}

TEST(MSEObserver, MatchesBruteForceOverAllBatches) {
  expect_search_matches_brute_force(SearchLoss::Mse, search_data(21), 4);
}

TEST(EMDObserver, MatchesBruteForceOverAllBatches) {
  expect_search_matches_brute_force(SearchLoss::Emd, search_data(22), 4);
}

TEST(SearchObserver, NegativeOnlyData) {
  for (SearchLoss loss : {SearchLoss::Mse, SearchLoss::Emd}) {
    std::vector<float> x = normal_data(20000, 23);
    for (float& v : x) v = -std::fabs(v);
    x[5] = -5.f;
    expect_search_matches_brute_force(loss, x, 4);
  }
}

// ---- channel-wise weight observers ----

TEST(ChannelWiseWeightObservers, AbsMaxPerChannel) {
  QuanterOptions o;
  o.axis = 0;
  o.channels = 3;
  AbsMaxChannelWiseWeightObserver ob(o);
  EXPECT_EQ(ob.role(), QuantRole::Weight);
  EXPECT_EQ(ob.grid().kind(), GridKind::Narrow);
  const Tensor w = from_vector(std::vector<float>{1, -2, 0.5f, 0, 0, 0, 0, 0, 3, -4, 0, 0}, {3, 2, 2});
  const Tensor y = ob.forward(w);
  const std::vector<double> s = ob.quant_params().scales();
  EXPECT_NEAR(s[0], 2.0 / 127, 1e-9);
  EXPECT_NEAR(s[1], kScaleFloor, 1e-15);  // an all-zero channel: the floor, finite
  EXPECT_NEAR(s[2], 4.0 / 127, 1e-9);
  EXPECT_TRUE(AllClose(y, fake_quantize(w, ob.quant_params())));
  // Linear-like [2, 3] along axis 1.
  QuanterOptions o1;
  o1.axis = 1;
  o1.channels = 3;
  AbsMaxChannelWiseWeightObserver col(o1);
  col.forward(from_vector(std::vector<float>{1, -2, 3, -4, 5, 0.5f}, {2, 3}));
  const std::vector<double> sc = col.quant_params().scales();
  EXPECT_NEAR(sc[0], 4.0 / 127, 1e-9);
  EXPECT_NEAR(sc[1], 5.0 / 127, 1e-9);
  EXPECT_NEAR(sc[2], 3.0 / 127, 1e-9);
  EXPECT_NE(error_of([&] { col.forward(zeros({3, 2})); })
                .find("AbsMaxChannelWiseWeightObserver: input [3, 2] does not have 3 channels along axis 1"),
            std::string::npos);
}

TEST(ChannelWiseWeightObservers, MSEPerChannelMatchesBruteForce) {
  const int64_t channels = 4, per = 300;
  std::vector<float> w = normal_data(channels * per, 31);
  w[7] = 6.f;         // channel 0 outlier
  w[per + 3] = -5.f;  // channel 1 outlier
  for (int64_t i = 0; i < per; ++i) w[3 * per + i] = 0.f;  // channel 3 all zero
  QuanterOptions o;
  o.bits = 4;
  o.axis = 0;
  o.channels = channels;
  MSEChannelWiseWeightObserver ob(o);
  const Tensor wt = from_vector(w, {channels, per});
  ob.forward(wt);
  const std::vector<double> s = ob.quant_params().scales();
  const QuantGrid g(4, GridKind::Narrow);
  for (int64_t c = 0; c < 3; ++c) {
    const std::vector<double> row(w.begin() + c * per, w.begin() + (c + 1) * per);
    EXPECT_NEAR(s[c], ref_search(row, false, g) / 7, 1e-7) << "channel " << c;
  }
  EXPECT_NEAR(s[3], kScaleFloor, 1e-15);
  // The same weight transposed, observed along axis 1, gives the same steps.
  QuanterOptions o1 = o;
  o1.axis = 1;
  MSEChannelWiseWeightObserver tr(o1);
  tr.forward(wt.t());
  EXPECT_EQ(tr.quant_params().scales(), s);
}

// ---- contract ----

TEST(Observers, AllZeroDataGivesTheFloorStep) {
  for (const char* type :
       {"AbsmaxObserver", "AVGObserver", "HistObserver", "KLObserver", "MSEObserver", "EMDObserver"}) {
    QuanterPtr q = make_quanter(type);
    auto* ob = dynamic_cast<Observer*>(q.get());
    ASSERT_NE(ob, nullptr) << type;
    q->forward(zeros({2, 3, 4, 4}));
    q->forward(zeros({2, 3, 4, 4}));
    ob->finalize();
    EXPECT_EQ(scale_of(*q), static_cast<double>(static_cast<float>(kScaleFloor))) << type;
    const std::vector<float> y = q->forward(full({4}, 1e-3)).to_vector<float>();
    for (float v : y) EXPECT_TRUE(std::isfinite(v)) << type;
  }
}

TEST(Observers, QuantParamsBeforeAnyBatchThrowsNamingTheObserver) {
  QuanterOptions o;
  o.channels = 2;
  for (const std::string& type : observer_types()) {
    QuanterPtr q = make_quanter(type, o);
    const std::string e = error_of([&] { q->quant_params(); });
    EXPECT_NE(e.find(type), std::string::npos) << type << ": " << e;
    EXPECT_NE(e.find("no "), std::string::npos) << type << ": " << e;
    EXPECT_NE(error_of([&] { dynamic_cast<Observer&>(*q).finalize(); }).find(type), std::string::npos) << type;
  }
}

TEST(Observers, FactoryAndAlgoNames) {
  QuanterOptions o = opts_bins(512);
  o.observer.kl_start = KlStart::Paddle;
  QuanterPtr q = make_quanter("KLObserver", o);
  auto* kl = dynamic_cast<KLObserver*>(q.get());
  ASSERT_NE(kl, nullptr);
  EXPECT_EQ(kl->histogram().bins(), 512);
  EXPECT_EQ(kl->kl_start(), KlStart::Paddle);
  EXPECT_EQ(q->type_name(), "KLObserver");
  EXPECT_EQ(observer_type_for_algo("hist"), "HistObserver");
  EXPECT_EQ(observer_type_for_algo("KL"), "KLObserver");
  EXPECT_EQ(observer_type_for_algo("kl"), "KLObserver");
  EXPECT_EQ(observer_type_for_algo("MSE"), "MSEObserver");
  EXPECT_EQ(observer_type_for_algo("direct"), "AbsmaxObserver");
  EXPECT_EQ(observer_type_for_algo("abs_max"), "AbsmaxObserver");
  EXPECT_EQ(observer_type_for_algo("Avg"), "AVGObserver");
  EXPECT_EQ(observer_type_for_algo("emd"), "EMDObserver");
  const std::string e = error_of([] { observer_type_for_algo("unknown"); });
  EXPECT_NE(e.find("unknown PTQ algo 'unknown'; allowed (any case): abs_max, direct, avg, hist, KL, mse, emd"),
            std::string::npos)
      << e;
  for (const std::string& a : ptq_algos()) EXPECT_NO_THROW(make_quanter(observer_type_for_algo(a)));
  EXPECT_NE(error_of([] { make_observer("NoSuchObserver", {}); }).find("AbsmaxObserver, AVGObserver"),
            std::string::npos);
  QuanterOptions bits;
  bits.bits = 1;
  EXPECT_NE(error_of([&] { make_quanter("HistObserver", bits); }).find("HistObserver: bits must be in 2..16"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_quanter("MSEChannelWiseWeightObserver", {}); }).find("channels must be positive"),
            std::string::npos);
  QuanterOptions pact;
  pact.preprocess = Preprocess::Pact;
  EXPECT_NE(error_of([&] { make_quanter("KLObserver", pact); }).find("KLObserver: PTQ observers take no preprocess"),
            std::string::npos);
}

TEST(Observers, IdentityWhileCalibratingThenFakeQuant) {
  NoGradGuard ng;
  for (const char* type : {"AbsmaxObserver", "HistObserver", "KLObserver", "MSEObserver"}) {
    QuanterPtr q = make_quanter(type);
    auto& ob = dynamic_cast<Observer&>(*q);
    const Tensor x = from_vector(normal_data(2 * 3 * 5 * 5, 41), {2, 3, 5, 5});
    const Tensor y = q->forward(x);
    EXPECT_TRUE(y.is_same(x)) << type;  // the same tensor, no copy
    q->forward(from_vector(normal_data(40, 42), {4, 10}));  // any rank
    EXPECT_EQ(ob.batches_seen(), 2);
    ob.finalize();
    ob.finalize();  // idempotent
    EXPECT_TRUE(ob.finalized());
    const QuantParams p = q->quant_params();
    const Tensor z = q->forward(x);
    EXPECT_FALSE(z.is_same(x));
    EXPECT_TRUE(AllClose(z, fake_quantize(x, p), 0, 0)) << type;
    EXPECT_EQ(ob.batches_seen(), 2);  // frozen: no more statistics
    // state_dict carries the frozen step; a fresh observer loading it is finalized.
    QuanterPtr fresh = make_quanter(type);
    fresh->load_state_dict(q->state_dict());
    EXPECT_TRUE(dynamic_cast<Observer&>(*fresh).finalized());
    EXPECT_TRUE(AllClose(fresh->forward(x), z, 0, 0)) << type;
  }
}

TEST(Observers, WeightRolePerTensorRecomputesEachForward) {
  QuanterOptions o;
  o.role = QuantRole::Weight;
  QuanterPtr q = make_quanter("AbsmaxObserver", o);
  EXPECT_TRUE(dynamic_cast<Observer&>(*q).finalized());
  q->forward(vec({1.f, -4.f}));
  EXPECT_NEAR(scale_of(*q), 4.0 / 127, 1e-9);  // narrow weight grid: qmax 127
  const Tensor y = q->forward(vec({0.5f, -1.f}));
  EXPECT_NEAR(scale_of(*q), 1.0 / 127, 1e-9);
  EXPECT_TRUE(AllClose(y, vec({0.5f, -1.f}), 0, 1.0 / 254 + 1e-7));
}

TEST(Observers, FiftyBatchesKeepTheHistogramSize) {
  HistObserver ob(opts_bins(256));
  QuanterOptions o = opts_bins(256);
  EMDObserver emd(o);
  for (int b = 0; b < 50; ++b) {
    const Tensor x = from_vector(normal_data(1000, 100 + b, 1.0 + 0.05 * b), {10, 100});
    ob.forward(x);
    emd.forward(x);
  }
  EXPECT_EQ(ob.histogram().counts().size(), 256u);
  EXPECT_EQ(emd.histogram().counts().size(), 256u);
  EXPECT_EQ(emd.histogram().negative_counts().size(), 256u);
  EXPECT_EQ(ob.histogram().total(), 50000.0);
  EXPECT_EQ(ob.batches_seen(), 50);
}

TEST(Observers, StridedInputAndRepr) {
  const Tensor x = from_vector(normal_data(12 * 7, 61), {12, 7});
  HistObserver a, b;
  a.forward(x.t());  // a non-contiguous view
  b.forward(x.t().contiguous());
  EXPECT_EQ(a.histogram().counts(), b.histogram().counts());
  EXPECT_NE(a.extra_repr().find("activation, bits=8, grid=signed"), std::string::npos) << a.extra_repr();
  EXPECT_NE(a.extra_repr().find("bins=2048, hist_percent=0.99999"), std::string::npos) << a.extra_repr();
  EXPECT_NE(make_quanter("KLObserver")->extra_repr().find("kl_start=tensorrt"), std::string::npos);
}
