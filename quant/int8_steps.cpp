#include "quant/int8_steps.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>

#include "core/cpu/int8_conv.h"
#include "core/cpu/int8_gemm.h"
#include "core/parallel.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per parallel chunk of the element-wise loops

// Runs fn(begin, end) over [0, n) on the pool when the work is large.
template <typename F>
void for_range(int64_t n, int64_t grain, F&& fn) {
  if (n < 2 * grain) {
    fn(int64_t{0}, n);
  } else {
    parallel_for(n, grain, [&](int64_t b, int64_t e) { fn(b, e); });
  }
}

// rint rounds half to even like nearbyint under the default rounding mode, and vectorises.
inline uint8_t quantize_one(float x, float inv, float z, float lo, float hi) {
  return static_cast<uint8_t>(static_cast<int32_t>(std::min(std::max(std::rint(x * inv) + z, lo), hi)));
}

std::string str(const EValue& v) { return v.describe(); }

// The element loops take their scalars by value and their arrays as __restrict pointers: a uint8_t
// store may alias anything, which would otherwise force a reload of every scalar per element and
// keep the loop from vectorising.
void quantize_run(const float* __restrict x, uint8_t* __restrict y, int64_t n, float inv, float z, float lo,
                  float hi) {
  for (int64_t i = 0; i < n; ++i) y[i] = quantize_one(x[i], inv, z, lo, hi);
}

void dequantize_run(const uint8_t* __restrict q, float* __restrict y, int64_t n, float s, float z) {
  for (int64_t i = 0; i < n; ++i) y[i] = (static_cast<float>(q[i]) - z) * s;
}

void add_f32_run(const float* __restrict a, const float* __restrict b, float* __restrict o, int64_t n, float lo,
                 float hi) {
  for (int64_t i = 0; i < n; ++i) o[i] = std::min(std::max(a[i] + b[i], lo), hi);
}

// One input's value as float: f32 as is, uint8 dequantized (q - z) * s.
inline float input_value(const float* __restrict x, int64_t i, float, float) { return x[i]; }
inline float input_value(const uint8_t* __restrict x, int64_t i, float s, float z) {
  return (static_cast<float>(x[i]) - z) * s;
}

// o = clamp(a + b, lo, hi) for any mix of f32 and uint8 inputs.
template <typename A, typename B>
void add_mixed_run(const A* __restrict a, const B* __restrict b, float* __restrict o, int64_t n, float sa, float za,
                   float sb, float zb, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = input_value(a, i, sa, za) + input_value(b, i, sb, zb);
    o[i] = std::min(std::max(v, lo), hi);
  }
}

void clamp_u8_run(const uint8_t* __restrict x, uint8_t* __restrict y, int64_t n, uint8_t lo, uint8_t hi) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i], lo), hi);
}

void clamp_f32_run(const float* __restrict x, float* __restrict y, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i], lo), hi);
}

// ---------------------------------------------------------------- layout / representation

class QuantizeStep : public Step {
 public:
  QuantizeStep(const EValue& in, const EValue& out) : in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
    transpose_ = in.layout == Layout::Plain && out.layout == Layout::NHWC;
  }
  void run(const RunContext& ctx) const override {
    const float* x = static_cast<const float*>(ctx.at(in_.buffer));
    uint8_t* y = static_cast<uint8_t*>(ctx.at(out_.buffer));
    const float inv = 1.0f / out_.grid.scale, z = static_cast<float>(out_.grid.zero_point);
    const float lo = static_cast<float>(out_.grid.qmin), hi = static_cast<float>(out_.grid.qmax);
    if (!transpose_ || out_.h * out_.w == 1 || out_.c == 1) {
      for_range(ctx.batch * in_.numel(), kGrain,
                [=](int64_t b, int64_t e) { quantize_run(x + b, y + b, e - b, inv, z, lo, hi); });
      return;
    }
    const int64_t c = out_.c, hw = out_.h * out_.w;
    for_range(ctx.batch, std::max<int64_t>(1, kGrain / (c * hw)), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const float* xn = x + n * c * hw;
        uint8_t* yn = y + n * c * hw;
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t p = 0; p < hw; ++p) yn[p * c + ch] = quantize_one(xn[ch * hw + p], inv, z, lo, hi);
      }
    });
  }
  std::string describe() const override { return "quantize " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
  bool transpose_;
};

class DequantizeStep : public Step {
 public:
  DequantizeStep(const EValue& in, const EValue& out) : in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    const uint8_t* q = static_cast<const uint8_t*>(ctx.at(in_.buffer));
    float* y = static_cast<float*>(ctx.at(out_.buffer));
    const float s = in_.grid.scale, z = static_cast<float>(in_.grid.zero_point);
    for_range(ctx.batch * in_.numel(), kGrain, [=](int64_t b, int64_t e) { dequantize_run(q + b, y + b, e - b, s, z); });
  }
  std::string describe() const override { return "dequantize " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
};

class RequantizeStep : public Step {
 public:
  RequantizeStep(const EValue& in, const EValue& out) : in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
    for (int q = 0; q < 256; ++q) {
      const float x = (static_cast<float>(q) - static_cast<float>(in.grid.zero_point)) * in.grid.scale;
      table_[q] = static_cast<uint8_t>(out.grid.quantize(x));
    }
  }
  void run(const RunContext& ctx) const override {
    cpu::int8_lookup_u8(static_cast<const uint8_t*>(ctx.at(in_.buffer)), ctx.batch * in_.numel(), table_.data(),
                        static_cast<uint8_t*>(ctx.at(out_.buffer)));
  }
  std::string describe() const override { return "requantize " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
  std::array<uint8_t, 256> table_{};
};

class RelayoutStep : public Step {
 public:
  RelayoutStep(const EValue& in, const EValue& out) : in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    const float* x = static_cast<const float*>(ctx.at(in_.buffer));
    float* y = static_cast<float*>(ctx.at(out_.buffer));
    const int64_t c = in_.c, hw = in_.h * in_.w;
    for_range(ctx.batch, std::max<int64_t>(1, kGrain / (c * hw)), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n)
        for (int64_t p = 0; p < hw; ++p)
          for (int64_t ch = 0; ch < c; ++ch) y[(n * c + ch) * hw + p] = x[(n * hw + p) * c + ch];
    });
  }
  std::string describe() const override { return "relayout " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
};

// ---------------------------------------------------------------- weight layers

// Per-channel int32 bias and float multiplier of a converted layer with the plan's epilogue:
// the float result is M_c * acc + B_c with M_c = a_c * s_in * s_w[c] and B_c = a_c * bias_c + b_c
// (a, b: the folded BatchNorm, else 1, 0), so bias_q = nearbyint(B_c / M_c).
struct Epilogue {
  std::vector<int8_t> weight;  // possibly with rows zeroed (a BatchNorm scale of 0)
  std::vector<int32_t> bias_q;
  std::vector<float> multiplier;
  cpu::Int8Output out;
};

// |bias_q| + |acc| + |z * row_sum| < 2^31 with |acc|, |z * row_sum| <= k * 255 * 128.
double bias_limit(int64_t k) { return 2147483647.0 - 2.0 * static_cast<double>(k) * 255.0 * 128.0; }

Epilogue make_epilogue(const ConvertedWeightLayer& layer, const PlanNode& p, const EValue& in, const EValue& out) {
  const Tensor wq = layer.buffer("weight");
  const int64_t n = wq.size(0), per_row = wq.numel() / n;
  Epilogue e;
  e.weight = wq.contiguous().to_vector<int8_t>();
  const std::vector<float> ws = layer.buffer("weight_scale").to_vector<float>();
  const std::vector<float> bias = layer.has_bias() ? layer.buffer("bias").to_vector<float>() : std::vector<float>();
  QSLIM_CHECK(p.bn_scale.empty() || static_cast<int64_t>(p.bn_scale.size()) == n, "Int8Engine: BatchNorm of ",
              p.bn_scale.size(), " channels folded into a layer of ", n, " output channels");
  const double s_in = in.grid.scale;
  e.bias_q.resize(n);
  e.multiplier.resize(n);
  for (int64_t c = 0; c < n; ++c) {
    const double base = s_in * ws[ws.size() == 1 ? 0 : c];
    const double a = p.bn_scale.empty() ? 1.0 : p.bn_scale[c];
    const double total_bias = a * (bias.empty() ? 0.0 : bias[c]) + (p.bn_shift.empty() ? 0.0 : p.bn_shift[c]);
    double m = base * a;
    if (std::fabs(m) < 1e-30) {  // the channel is the constant total_bias
      std::fill(e.weight.begin() + c * per_row, e.weight.begin() + (c + 1) * per_row, int8_t{0});
      m = base;
    }
    const double bq = std::nearbyint(total_bias / m);
    QSLIM_CHECK(std::fabs(bq) <= bias_limit(per_row), "Int8Engine: the int32 bias of channel ", c, " (", bq,
                ") overflows next to the accumulator; int8_bias_fits should have sent this layer to float");
    e.bias_q[c] = static_cast<int32_t>(bq);
    e.multiplier[c] = static_cast<float>(out.u8 ? m / out.grid.scale : m);
  }
  if (out.u8) {
    e.out.zero_point = out.grid.zero_point;
    e.out.qmin = out.grid.qmin;
    e.out.qmax = out.grid.qmax;
  } else {
    e.out.fmin = p.lo;
    e.out.fmax = p.hi;
  }
  return e;
}

}  // namespace

bool int8_bias_fits(const ConvertedWeightLayer& layer, const PlanNode& p, float in_scale) {
  const Tensor wq = layer.buffer("weight");
  const int64_t n = wq.size(0), k = wq.numel() / n;
  const std::vector<float> ws = layer.buffer("weight_scale").to_vector<float>();
  const std::vector<float> bias = layer.has_bias() ? layer.buffer("bias").to_vector<float>() : std::vector<float>();
  if (bias_limit(k) <= 0) return false;
  for (int64_t c = 0; c < n; ++c) {
    const double base = static_cast<double>(in_scale) * ws[ws.size() == 1 ? 0 : c];
    const double a = p.bn_scale.empty() ? 1.0 : p.bn_scale[c];
    const double total_bias = a * (bias.empty() ? 0.0 : bias[c]) + (p.bn_shift.empty() ? 0.0 : p.bn_shift[c]);
    double m = base * a;
    if (std::fabs(m) < 1e-30) m = base;
    const double bq = std::nearbyint(total_bias / m);
    if (!std::isfinite(bq) || std::fabs(bq) > bias_limit(k)) return false;
  }
  return true;
}

namespace {

// The layer's conv on input `in` (batch left at 1; set per run).
cpu::Int8ConvGeometry conv_geometry(const ConvertedConv2D& layer, const EValue& in) {
  const Tensor w = layer.buffer("weight");
  const Conv2dParams& cp = layer.conv_params();
  cpu::Int8ConvGeometry g;
  g.in_h = in.h;
  g.in_w = in.w;
  g.in_c = in.c;
  g.out_c = w.size(0);
  g.kernel_h = w.size(2);
  g.kernel_w = w.size(3);
  g.stride_h = cp.stride[0];
  g.stride_w = cp.stride[1];
  g.pad_h = cp.padding[0];
  g.pad_w = cp.padding[1];
  g.dilation_h = cp.dilation[0];
  g.dilation_w = cp.dilation[1];
  return g;
}

class ConvStep : public Step {
 public:
  // pool2: out is the conv's 2x2 stride-2 max pool (uint8, groups == 1), computed by the fused kernel.
  ConvStep(const ConvertedConv2D& layer, const PlanNode& p, const EValue& in, const EValue& out, bool pool2 = false)
      : name_(layer.type_name()), in_(in), out_(out), pool2_(pool2) {
    reads = {in.buffer};
    writes = {out.buffer};
    const Conv2dParams& cp = layer.conv_params();
    g_ = conv_geometry(layer, in);
    const int64_t f = pool2 ? 2 : 1;
    QSLIM_CHECK(g_.out_h() / f == out.h && g_.out_w() / f == out.w && g_.out_c == out.c,
                "Int8Engine: conv geometry gives [", g_.out_c, ", ", g_.out_h(), ", ", g_.out_w(), "]",
                pool2 ? " (pooled 2x2)" : "", " but the traced output is ", shape_str(out.shape));
    QSLIM_CHECK(!pool2 || (out.u8 && cp.groups == 1), "Int8Engine: only uint8 groups == 1 convs fuse a max pool");
    Epilogue e = make_epilogue(layer, p, in, out);
    out_spec_ = e.out;
    depthwise_ = cp.groups != 1;
    const int32_t zin = in.grid.zero_point;
    if (depthwise_) {
      dw_ = cpu::pack_int8_depthwise_weights(e.weight.data(), g_.out_c, g_.kernel_h, g_.kernel_w, e.bias_q.data(), zin,
                                             e.multiplier.data(), g_.out_c);
    } else {
      packed_ = cpu::pack_int8_conv_weights(e.weight.data(), g_, e.bias_q.data(), zin, e.multiplier.data(), g_.out_c);
    }
  }
  void run(const RunContext& ctx) const override {
    cpu::Int8ConvGeometry g = g_;
    g.batch = ctx.batch;
    const uint8_t* x = static_cast<const uint8_t*>(ctx.at(in_.buffer));
    void* y = ctx.at(out_.buffer);
    if (depthwise_) {
      if (out_.u8) cpu::int8_depthwise_u8(x, g, dw_, out_spec_, static_cast<uint8_t*>(y));
      else cpu::int8_depthwise_f32(x, g, dw_, out_spec_, static_cast<float*>(y));
    } else if (pool2_) {
      cpu::int8_conv2d_maxpool2_u8(x, g, in_.grid.zero_point, packed_, out_spec_, static_cast<uint8_t*>(y));
    } else {
      if (out_.u8) cpu::int8_conv2d_u8(x, g, in_.grid.zero_point, packed_, out_spec_, static_cast<uint8_t*>(y));
      else cpu::int8_conv2d_f32(x, g, in_.grid.zero_point, packed_, out_spec_, static_cast<float*>(y));
    }
  }
  // Whether the fused conv + pool kernel runs (else the kernel pools a temporary full map).
  bool pool_fused() const { return pool2_ && cpu::int8_conv2d_maxpool2_fused(g_, packed_); }
  std::string describe() const override {
    std::ostringstream os;
    os << (depthwise_ ? "int8 depthwise " : "int8 conv ") << g_.kernel_h << "x" << g_.kernel_w << " s" << g_.stride_h
       << (pool2_ ? " + maxpool 2x2" : "") << " " << str(in_) << " -> " << str(out_);
    return os.str();
  }

 private:
  std::string name_;
  EValue in_, out_;
  cpu::Int8ConvGeometry g_;
  cpu::Int8Output out_spec_;
  bool depthwise_ = false;
  bool pool2_ = false;
  cpu::PackedInt8Weights packed_;
  cpu::PackedDepthwiseWeights dw_;
};

class LinearStep : public Step {
 public:
  LinearStep(const ConvertedLinear& layer, const PlanNode& p, const EValue& in, const EValue& out) : in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
    Epilogue e = make_epilogue(layer, p, in, out);
    n_ = layer.buffer("weight").size(0);
    k_ = layer.buffer("weight").size(1);
    if (in.layout == Layout::FlatNHWC && in.h * in.w > 1) {
      // Column c*H*W + h*W + w of the NCHW flatten is column (h*W + w)*C + c of the NHWC one.
      const int64_t c = in.c, hw = in.h * in.w;
      QSLIM_CHECK(c * hw == k_, "Int8Engine: linear of ", k_, " inputs after a [", c, ", ", in.h, ", ", in.w, "] map");
      std::vector<int8_t> perm(e.weight.size());
      for (int64_t r = 0; r < n_; ++r)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t q = 0; q < hw; ++q) perm[r * k_ + q * c + ch] = e.weight[r * k_ + ch * hw + q];
      e.weight.swap(perm);
      permuted_ = true;
    }
    out_spec_ = e.out;
    packed_ = cpu::pack_int8_weights(e.weight.data(), n_, k_, k_, e.bias_q.data(), in.grid.zero_point,
                                     e.multiplier.data(), n_);
  }
  void run(const RunContext& ctx) const override {
    const uint8_t* a = static_cast<const uint8_t*>(ctx.at(in_.buffer));
    if (out_.u8)
      cpu::gemm_u8s8_u8(ctx.batch, a, k_, packed_, out_spec_, static_cast<uint8_t*>(ctx.at(out_.buffer)), n_);
    else
      cpu::gemm_u8s8_f32(ctx.batch, a, k_, packed_, out_spec_, static_cast<float*>(ctx.at(out_.buffer)), n_);
  }
  std::string describe() const override {
    return std::string("int8 linear ") + (permuted_ ? "(NHWC columns) " : "") + str(in_) + " -> " + str(out_);
  }

 private:
  EValue in_, out_;
  int64_t n_ = 0, k_ = 0;
  bool permuted_ = false;
  cpu::Int8Output out_spec_;
  cpu::PackedInt8Weights packed_;
};

// ---------------------------------------------------------------- element-wise and pooling

class AddStep : public Step {
 public:
  AddStep(const EValue& a, const EValue& b, const EValue& out, float lo, float hi, std::vector<EValue> quantized)
      : a_(a), b_(b), out_(out), lo_(lo), hi_(hi), quantized_(std::move(quantized)) {
    QSLIM_CHECK(!out.u8 || quantized_.empty(), "Int8Engine: an add with a uint8 output makes no quantized copies");
    reads = {a.buffer, b.buffer};
    writes = {out.buffer};
    for (const EValue& q : quantized_) writes.push_back(q.buffer);
  }
  void run(const RunContext& ctx) const override {
    const int64_t count = ctx.batch * out_.numel();
    void* y = ctx.at(out_.buffer);
    if (out_.u8 && a_.u8 && b_.u8) {
      cpu::int8_add_u8(static_cast<const uint8_t*>(ctx.at(a_.buffer)), a_.grid.scale, a_.grid.zero_point,
                       static_cast<const uint8_t*>(ctx.at(b_.buffer)), b_.grid.scale, b_.grid.zero_point, count,
                       out_.grid.scale, out_.grid.zero_point, out_.grid.qmin, out_.grid.qmax,
                       static_cast<uint8_t*>(y));
      return;
    }
    const void* a = ctx.at(a_.buffer);
    const void* b = ctx.at(b_.buffer);
    const float sa = a_.grid.scale, za = static_cast<float>(a_.grid.zero_point);
    const float sb = b_.grid.scale, zb = static_cast<float>(b_.grid.zero_point);
    const float lo = lo_, hi = hi_;
    const bool au8 = a_.u8, bu8 = b_.u8;
    // The sum and its quantized copies in one pass, in cache-sized chunks (a uint8 output: the float
    // sum of a chunk in scratch, then quantized).
    for_range(count, kGrain, [&](int64_t s, int64_t e) {
      thread_local std::vector<float> scratch;
      if (out_.u8 && scratch.size() < 4096) scratch.resize(4096);
      for (int64_t c0 = s; c0 < e; c0 += 4096) {
        const int64_t n = std::min(e, c0 + 4096) - c0;
        float* o = out_.u8 ? scratch.data() : static_cast<float*>(y) + c0;
        if (!au8 && !bu8) {
          add_f32_run(static_cast<const float*>(a) + c0, static_cast<const float*>(b) + c0, o, n, lo, hi);
        } else if (au8 && bu8) {
          add_mixed_run(static_cast<const uint8_t*>(a) + c0, static_cast<const uint8_t*>(b) + c0, o, n, sa, za,
                        sb, zb, lo, hi);
        } else if (au8) {
          add_mixed_run(static_cast<const uint8_t*>(a) + c0, static_cast<const float*>(b) + c0, o, n, sa, za, sb,
                        zb, lo, hi);
        } else {
          add_mixed_run(static_cast<const float*>(a) + c0, static_cast<const uint8_t*>(b) + c0, o, n, sa, za, sb,
                        zb, lo, hi);
        }
        if (out_.u8)
          quantize_run(o, static_cast<uint8_t*>(y) + c0, n, 1.0f / out_.grid.scale,
                       static_cast<float>(out_.grid.zero_point), static_cast<float>(out_.grid.qmin),
                       static_cast<float>(out_.grid.qmax));
        for (const EValue& q : quantized_) {
          uint8_t* dst = static_cast<uint8_t*>(ctx.at(q.buffer));
          quantize_run(o, dst + c0, n, 1.0f / q.grid.scale, static_cast<float>(q.grid.zero_point),
                       static_cast<float>(q.grid.qmin), static_cast<float>(q.grid.qmax));
        }
      }
    });
  }
  std::string describe() const override {
    std::string s = "add " + str(a_) + " + " + str(b_) + " -> " + str(out_);
    for (const EValue& q : quantized_) s += " and " + str(q);
    return s;
  }

 private:
  EValue a_, b_, out_;
  float lo_, hi_;
  std::vector<EValue> quantized_;
};

class ClampStep : public Step {
 public:
  ClampStep(const EValue& in, const EValue& out, float lo, float hi) : in_(in), out_(out), lo_(lo), hi_(hi) {
    reads = {in.buffer};
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    const int64_t count = ctx.batch * in_.numel();
    if (in_.u8) {
      const uint8_t* x = static_cast<const uint8_t*>(ctx.at(in_.buffer));
      uint8_t* y = static_cast<uint8_t*>(ctx.at(out_.buffer));
      const uint8_t lo = static_cast<uint8_t>(out_.grid.qmin), hi = static_cast<uint8_t>(out_.grid.qmax);
      for_range(count, 4 * kGrain, [=](int64_t s, int64_t e) { clamp_u8_run(x + s, y + s, e - s, lo, hi); });
      return;
    }
    const float* x = static_cast<const float*>(ctx.at(in_.buffer));
    float* y = static_cast<float*>(ctx.at(out_.buffer));
    const float lo = lo_, hi = hi_;
    for_range(count, kGrain, [=](int64_t s, int64_t e) { clamp_f32_run(x + s, y + s, e - s, lo, hi); });
  }
  std::string describe() const override { return "clamp " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
  float lo_, hi_;
};

class MaxPoolStep : public Step {
 public:
  MaxPoolStep(const EValue& in, const EValue& out, const nn::Size2& k, const nn::Size2& s, const nn::Size2& p)
      : in_(in), out_(out), k_(k), s_(s), p_(p) {
    reads = {in.buffer};
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    cpu::int8_maxpool_u8(static_cast<const uint8_t*>(ctx.at(in_.buffer)), ctx.batch, in_.h, in_.w, in_.c, k_.h, k_.w,
                         s_.h, s_.w, p_.h, p_.w, static_cast<uint8_t*>(ctx.at(out_.buffer)));
  }
  std::string describe() const override { return "int8 maxpool " + k_.str() + " " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
  nn::Size2 k_, s_, p_;
};

// Clamps u8 data into a grid narrower than [0, 255] (after kernels that clamp to the full range).
void clamp_u8(uint8_t* y, int64_t count, const U8Grid& g) {
  if (g.qmin == 0 && g.qmax == 255) return;
  const uint8_t lo = static_cast<uint8_t>(g.qmin), hi = static_cast<uint8_t>(g.qmax);
  for (int64_t i = 0; i < count; ++i) y[i] = std::min(std::max(y[i], lo), hi);
}

class GlobalPoolStep : public Step {
 public:
  GlobalPoolStep(const EValue& in, const EValue& out) : in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    const int64_t c = in_.c, h = in_.h, w = in_.w, hw = h * w;
    if (in_.u8) {
      // The mean of the dequantized values (q - z) * s, summed in float as the float pool does, so
      // a 1x1 map passes its values through unchanged.
      const uint8_t* x = static_cast<const uint8_t*>(ctx.at(in_.buffer));
      thread_local std::vector<float> mean;
      float* y = out_.u8 ? (mean.resize(static_cast<size_t>(ctx.batch * c)), mean.data())
                         : static_cast<float*>(ctx.at(out_.buffer));
      const float s = in_.grid.scale, z = static_cast<float>(in_.grid.zero_point);
      const float count = static_cast<float>(hw);
      for (int64_t n = 0; n < ctx.batch; ++n) {
        float* yn = y + n * c;
        std::fill(yn, yn + c, 0.0f);
        for (int64_t p = 0; p < hw; ++p) {
          const uint8_t* xp = x + (n * hw + p) * c;
          for (int64_t ch = 0; ch < c; ++ch) yn[ch] += (static_cast<float>(xp[ch]) - z) * s;
        }
        for (int64_t ch = 0; ch < c; ++ch) yn[ch] /= count;
      }
      if (out_.u8)
        quantize_run(y, static_cast<uint8_t*>(ctx.at(out_.buffer)), ctx.batch * c, 1.0f / out_.grid.scale,
                     static_cast<float>(out_.grid.zero_point), static_cast<float>(out_.grid.qmin),
                     static_cast<float>(out_.grid.qmax));
      return;
    }
    const float* x = static_cast<const float*>(ctx.at(in_.buffer));
    float* y = static_cast<float*>(ctx.at(out_.buffer));
    const float inv = 1.0f / static_cast<float>(hw);
    const bool nhwc = in_.layout == Layout::NHWC;
    for_range(ctx.batch, std::max<int64_t>(1, kGrain / (c * hw)), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const float* xn = x + n * c * hw;
        float* yn = y + n * c;
        if (nhwc) {
          std::fill(yn, yn + c, 0.0f);
          for (int64_t p = 0; p < hw; ++p)
            for (int64_t ch = 0; ch < c; ++ch) yn[ch] += xn[p * c + ch];
          for (int64_t ch = 0; ch < c; ++ch) yn[ch] *= inv;
        } else {
          for (int64_t ch = 0; ch < c; ++ch) {
            float s = 0;
            for (int64_t p = 0; p < hw; ++p) s += xn[ch * hw + p];
            yn[ch] = s * inv;
          }
        }
      }
    });
  }
  std::string describe() const override { return "global avgpool " + str(in_) + " -> " + str(out_); }

 private:
  EValue in_, out_;
};

class LutStep : public Step {
 public:
  LutStep(nn::Module& op, const EValue& in, const EValue& out) : name_(op.type_name()), in_(in), out_(out) {
    reads = {in.buffer};
    writes = {out.buffer};
    std::vector<float> xs(256);
    for (int q = 0; q < 256; ++q)
      xs[q] = (static_cast<float>(q) - static_cast<float>(in.grid.zero_point)) * in.grid.scale;
    Tensor x = Tensor::empty({256});
    std::copy(xs.begin(), xs.end(), x.data<float>());
    const std::vector<float> ys = op.forward(x).to_vector<float>();
    QSLIM_CHECK(ys.size() == 256, "Int8Engine: ", name_, " is not element-wise (256 inputs gave ", ys.size(),
                " outputs)");
    for (int q = 0; q < 256; ++q) {
      f32_[q] = ys[q];
      u8_[q] = static_cast<uint8_t>(out.u8 ? out.grid.quantize(ys[q]) : 0);
    }
  }
  void run(const RunContext& ctx) const override {
    const uint8_t* x = static_cast<const uint8_t*>(ctx.at(in_.buffer));
    const int64_t count = ctx.batch * in_.numel();
    if (out_.u8) {
      cpu::int8_lookup_u8(x, count, u8_.data(), static_cast<uint8_t*>(ctx.at(out_.buffer)));
      return;
    }
    float* y = static_cast<float*>(ctx.at(out_.buffer));
    const float* t = f32_.data();
    for_range(count, kGrain, [=](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) y[i] = t[x[i]];
    });
  }
  std::string describe() const override { return "lookup " + name_ + " " + str(in_) + " -> " + str(out_); }

 private:
  std::string name_;
  EValue in_, out_;
  std::array<uint8_t, 256> u8_{};
  std::array<float, 256> f32_{};
};

class ConcatStep : public Step {
 public:
  ConcatStep(const std::vector<EValue>& ins, const EValue& out) : ins_(ins), out_(out) {
    for (const EValue& v : ins) reads.push_back(v.buffer);
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    uint8_t* y = static_cast<uint8_t*>(ctx.at(out_.buffer));
    const int64_t pixels = ctx.batch * out_.h * out_.w;
    int64_t offset = 0;
    for (const EValue& v : ins_) {
      cpu::int8_requantize_into_u8(static_cast<const uint8_t*>(ctx.at(v.buffer)), pixels, v.c, v.grid.scale,
                                   v.grid.zero_point, y, out_.c, offset, out_.grid.scale, out_.grid.zero_point);
      offset += v.c;
    }
    clamp_u8(y, pixels * out_.c, out_.grid);
  }
  std::string describe() const override {
    std::string s = "int8 concat";
    for (const EValue& v : ins_) {
      s += ' ';
      s += str(v);
    }
    return s + " -> " + str(out_);
  }

 private:
  std::vector<EValue> ins_;
  EValue out_;
};

class FloatModuleStep : public Step {
 public:
  FloatModuleStep(nn::ModulePtr m, std::string name, const std::vector<EValue>& ins, const EValue& out)
      : m_(std::move(m)), name_(std::move(name)), ins_(ins), out_(out) {
    for (const EValue& v : ins) reads.push_back(v.buffer);
    writes = {out.buffer};
  }
  void run(const RunContext& ctx) const override {
    std::vector<Tensor> xs;
    for (const EValue& v : ins_) xs.push_back(ctx.view(v));
    Tensor y = xs.size() == 1 ? m_->forward(xs[0]) : m_->forward(xs);
    Tensor dst = ctx.view(out_);
    QSLIM_CHECK(y.shape() == dst.shape(), "Int8Engine: '", name_, "' (", m_->type_name(), ") gave ",
                shape_str(y.shape()), " but the traced graph expects ", shape_str(dst.shape()));
    dst.copy_(y);
  }
  std::string describe() const override {
    std::string s = "float " + name_ + " (" + m_->type_name() + ")";
    for (const EValue& v : ins_) {
      s += ' ';
      s += str(v);
    }
    return s + " -> " + str(out_);
  }

 private:
  nn::ModulePtr m_;
  std::string name_;
  std::vector<EValue> ins_;
  EValue out_;
};

}  // namespace

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Plain: return "plain";
    case Layout::NHWC: return "NHWC";
    case Layout::FlatNHWC: return "flat-NHWC";
  }
  return "?";
}

std::string EValue::describe() const {
  std::ostringstream os;
  if (u8) os << "u8(s=" << grid.scale << ", z=" << grid.zero_point << ")";
  else os << "f32";
  os << " " << layout_name(layout) << " " << shape_str(shape);
  return os.str();
}

Tensor RunContext::view(const EValue& v) const {
  QSLIM_CHECK(!v.u8 && (v.layout == Layout::Plain || v.h * v.w == 1),
              "Int8Engine: a float view needs a plain f32 value, got ", v.describe());
  Shape s{batch};
  s.insert(s.end(), v.shape.begin(), v.shape.end());
  if (v.buffer < 0) return input.reshape(s);
  return make_view(arenas[v.buffer], s, contiguous_strides(s), 0);
}

StepPtr quantize_step(const EValue& in, const EValue& out) { return std::make_unique<QuantizeStep>(in, out); }
StepPtr dequantize_step(const EValue& in, const EValue& out) { return std::make_unique<DequantizeStep>(in, out); }
StepPtr requantize_step(const EValue& in, const EValue& out) { return std::make_unique<RequantizeStep>(in, out); }
StepPtr relayout_step(const EValue& in, const EValue& out) { return std::make_unique<RelayoutStep>(in, out); }
StepPtr conv_step(const ConvertedConv2D& layer, const PlanNode& p, const EValue& in, const EValue& out) {
  return std::make_unique<ConvStep>(layer, p, in, out);
}
StepPtr conv_maxpool2_step(const ConvertedConv2D& layer, const PlanNode& p, const EValue& in, const EValue& pooled) {
  // The geometry rules most convs out before their weights are packed; the multipliers' signs are
  // known only once the epilogue is built.
  if (!cpu::int8_conv2d_maxpool2_shape_fuses(conv_geometry(layer, in))) return nullptr;
  auto step = std::make_unique<ConvStep>(layer, p, in, pooled, true);
  if (!step->pool_fused()) return nullptr;
  return step;
}
StepPtr linear_step(const ConvertedLinear& layer, const PlanNode& p, const EValue& in, const EValue& out) {
  return std::make_unique<LinearStep>(layer, p, in, out);
}
StepPtr elementwise_add_step(const EValue& a, const EValue& b, const EValue& out, float lo, float hi,
                             std::vector<EValue> quantized) {
  return std::make_unique<AddStep>(a, b, out, lo, hi, std::move(quantized));
}
StepPtr clamp_step(const EValue& in, const EValue& out, float lo, float hi) {
  return std::make_unique<ClampStep>(in, out, lo, hi);
}
StepPtr maxpool_u8_step(const EValue& in, const EValue& out, const nn::Size2& kernel, const nn::Size2& stride,
                        const nn::Size2& padding) {
  return std::make_unique<MaxPoolStep>(in, out, kernel, stride, padding);
}
StepPtr global_pool_step(const EValue& in, const EValue& out) { return std::make_unique<GlobalPoolStep>(in, out); }
StepPtr lut_step(nn::Module& op, const EValue& in, const EValue& out) { return std::make_unique<LutStep>(op, in, out); }
StepPtr concat_u8_step(const std::vector<EValue>& ins, const EValue& out) {
  return std::make_unique<ConcatStep>(ins, out);
}
StepPtr float_module_step(nn::ModulePtr module, const std::string& name, const std::vector<EValue>& ins,
                          const EValue& out) {
  return std::make_unique<FloatModuleStep>(std::move(module), name, ins, out);
}

}  // namespace qslim::quant
