#include "quant/int8_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/cpu/thread_pool.h"
#include "core/factory.h"
#include "nn/pooling.h"
#include "quant/converted_layers.h"

namespace qslim::quant {

namespace {

bool accepts(const U8Grid& have, const U8Grid& want) {
  return have.scale == want.scale && have.zero_point == want.zero_point && have.qmin >= want.qmin &&
         have.qmax <= want.qmax;
}

// A value of `shape` in `layout`, with the map geometry filled in for [C, H, W] shapes.
EValue make_value(const Shape& shape, Layout layout, bool u8, const U8Grid& grid = {}) {
  EValue v;
  v.shape = shape;
  v.layout = layout;
  v.u8 = u8;
  v.grid = grid;
  if (shape.size() == 3) {
    v.c = shape[0];
    v.h = shape[1];
    v.w = shape[2];
  }
  return v;
}

// Plain and NHWC coincide for [C, 1, 1] maps.
Layout effective(const EValue& v) {
  if (v.layout == Layout::NHWC && v.h * v.w == 1) return Layout::Plain;
  if (v.layout == Layout::FlatNHWC && v.h * v.w == 1) return Layout::Plain;
  return v.layout;
}

}  // namespace

Int8Engine::Int8Engine(nn::ModulePtr model, const Shape& input_shape, Int8EngineOptions options)
    : model_(std::move(model)), input_shape_(input_shape), options_(options) {
  QSLIM_CHECK(model_ != nullptr, "Int8Engine: null model");
  model_->eval();
  Int8PlanOptions plan_options;
  plan_options.integer_residual_adds = options_.integer_residual_adds;
  plan_ = plan_int8(*model_, input_shape_, plan_options);
  build();
  plan_buffers();
  int64_t per_sample = 0;
  for (int64_t b : arena_bytes_) per_sample += b;
  tile_ = options_.tile_bytes <= 0 ? 0 : std::max<int64_t>(1, options_.tile_bytes / std::max<int64_t>(1, per_sample));
  has_float_steps_ = count_steps("float ") > 0;
}

int Int8Engine::new_buffer(int64_t sample_bytes) {
  buffer_bytes_.push_back(sample_bytes);
  return static_cast<int>(buffer_bytes_.size()) - 1;
}

int Int8Engine::add_value(EValue v) {
  values_.push_back(std::move(v));
  return static_cast<int>(values_.size()) - 1;
}

void Int8Engine::add_step(StepPtr s) { steps_.push_back(std::move(s)); }

int Int8Engine::as_u8(int v, const U8Grid& g) {
  const int e = native_[v];
  if (values_[e].u8 && accepts(values_[e].grid, g)) return e;
  for (int c : converted_[v])
    if (values_[c].u8 && accepts(values_[c].grid, g)) return c;
  const EValue& src = values_[e];
  Layout layout = src.layout;
  if (src.shape.size() == 3 && layout == Layout::Plain) layout = Layout::NHWC;
  EValue out = make_value(src.shape, layout, true, g);
  out.c = src.c;
  out.h = src.h;
  out.w = src.w;
  out.buffer = new_buffer(out.sample_bytes());
  add_step(src.u8 ? requantize_step(src, out) : quantize_step(src, out));
  const int id = add_value(out);
  converted_[v].push_back(id);
  return id;
}

int Int8Engine::as_f32(int v, bool plain) {
  const auto fits = [&](int e) {
    return !values_[e].u8 && (!plain || effective(values_[e]) == Layout::Plain);
  };
  int e = native_[v];
  if (fits(e)) return e;
  for (int c : converted_[v])
    if (fits(c)) return c;
  // Prefer an f32 copy that only needs a relayout.
  for (int c : converted_[v])
    if (!values_[c].u8) e = c;
  if (values_[e].u8) {
    const EValue& src = values_[e];
    EValue out = src;
    out.u8 = false;
    out.buffer = new_buffer(out.sample_bytes());
    add_step(dequantize_step(src, out));
    e = add_value(out);
    converted_[v].push_back(e);
    if (fits(e)) return e;
  }
  const EValue& src = values_[e];
  EValue out = src;
  out.layout = Layout::Plain;
  out.buffer = new_buffer(out.sample_bytes());
  add_step(relayout_step(src, out));
  const int id = add_value(out);
  converted_[v].push_back(id);
  return id;
}

int Int8Engine::held_for_float_add(int v) {
  const int e = native_[v];
  if (!values_[e].u8) return e;
  for (int c : converted_[v])
    if (!values_[c].u8) return c;
  return e;
}

std::vector<U8Grid> Int8Engine::grids_wanted(int v) const {
  std::vector<U8Grid> out;
  for (const PlanNode& c : plan_.nodes) {
    for (size_t k = 0; k < c.inputs.size(); ++k) {
      if (c.inputs[k] != v || c.in_grids.empty()) continue;
      const U8Grid g = c.op == PlanOp::AddInt8 || c.op == PlanOp::ResidualAddInt8 ? c.in_grids[k] : c.in_grids[0];
      if (std::find(out.begin(), out.end(), g) == out.end()) out.push_back(g);
    }
  }
  return out;
}

const PlanNode* Int8Engine::fusable_maxpool2(const PlanNode& conv) const {
  if (!options_.reuse_buffers || !options_.fuse_pooling || conv.output == plan_.graph.output) return nullptr;
  const PlanNode* consumer = nullptr;
  for (const PlanNode& c : plan_.nodes) {
    if (std::find(c.inputs.begin(), c.inputs.end(), conv.output) == c.inputs.end()) continue;
    if (consumer != nullptr) return nullptr;
    consumer = &c;
  }
  if (consumer == nullptr || !consumer->fused.empty()) return nullptr;
  const nn::Module& m = *plan_.graph.nodes[consumer->traced].module;
  const nn::MaxPool2D* pool = nullptr;
  if (consumer->op == PlanOp::MaxPoolInt8 && accepts(conv.out.grid, consumer->in_grids[0]))
    pool = dynamic_cast<const nn::MaxPool2D*>(&m.child("op"));
  else if (consumer->op == PlanOp::MaxPool)
    pool = dynamic_cast<const nn::MaxPool2D*>(&m);
  if (pool == nullptr || !(pool->kernel_size() == nn::Size2(2)) || !(pool->stride() == nn::Size2(2)) ||
      !(pool->padding() == nn::Size2(0)))
    return nullptr;
  return consumer;
}

void Int8Engine::build() {
  const TracedGraph& g = plan_.graph;
  native_.assign(g.values.size(), -1);
  converted_.assign(g.values.size(), {});
  native_[g.input] = add_value(make_value(g.values[g.input].shape, Layout::Plain, false));

  for (const PlanNode& p : plan_.nodes) {
    const TracedNode& t = g.nodes[p.traced];
    const Shape& out_shape = g.values[p.output].shape;
    const nn::Module* m = t.module.get();
    const auto emit = [&](EValue out) {
      out.buffer = new_buffer(out.sample_bytes());
      const int id = add_value(out);
      native_[p.output] = id;
      return values_[id];
    };
    // The node's module and every module fused into it, each on the previous one's output, in f32.
    const auto run_float = [&] {
      std::vector<int> chain{p.traced};
      chain.insert(chain.end(), p.fused.begin(), p.fused.end());
      std::vector<EValue> ins;
      for (int v : p.inputs) ins.push_back(values_[as_f32(v, true)]);
      for (int k : chain) {
        const TracedNode& tk = g.nodes[k];
        EValue out = make_value(g.values[tk.output].shape, Layout::Plain, false);
        out.buffer = new_buffer(out.sample_bytes());
        const int id = add_value(out);
        native_[tk.output] = id;
        add_step(float_module_step(tk.module, tk.name, ins, out));
        ins = {out};
      }
    };
    const bool u8_out = p.out.kind == Want::Kind::U8;
    switch (p.op) {
      case PlanOp::ConvInt8:
      case PlanOp::DepthwiseInt8: {
        if (!int8_bias_fits(dynamic_cast<const ConvertedWeightLayer&>(*m), p, p.in_grids[0].scale)) {
          run_float();
          break;
        }
        const EValue in = values_[as_u8(p.inputs[0], p.in_grids[0])];
        const auto& layer = dynamic_cast<const ConvertedConv2D&>(*m);
        if (const PlanNode* pool = p.op == PlanOp::ConvInt8 && u8_out ? fusable_maxpool2(p) : nullptr) {
          EValue pooled = make_value(g.values[pool->output].shape, Layout::NHWC, true, p.out.grid);
          pooled.buffer = static_cast<int>(buffer_bytes_.size());  // the id new_buffer gives below
          if (StepPtr s = conv_maxpool2_step(layer, p, in, pooled)) {
            QSLIM_CHECK(new_buffer(pooled.sample_bytes()) == pooled.buffer, "Int8Engine: buffer ids out of step");
            native_[pool->output] = add_value(pooled);  // the pool's node finds its output made
            add_step(std::move(s));
            break;
          }
        }
        const EValue out = emit(make_value(out_shape, Layout::NHWC, u8_out, p.out.grid));
        add_step(conv_step(layer, p, in, out));
        break;
      }
      case PlanOp::LinearInt8: {
        if (!int8_bias_fits(dynamic_cast<const ConvertedWeightLayer&>(*m), p, p.in_grids[0].scale)) {
          run_float();
          break;
        }
        const EValue in = values_[as_u8(p.inputs[0], p.in_grids[0])];
        const EValue out = emit(make_value(out_shape, Layout::Plain, u8_out, p.out.grid));
        add_step(linear_step(dynamic_cast<const ConvertedLinear&>(*m), p, in, out));
        break;
      }
      case PlanOp::AddInt8:
      case PlanOp::ResidualAddInt8: {
        const EValue a = values_[as_u8(p.inputs[0], p.in_grids[0])];
        const EValue b = values_[as_u8(p.inputs[1], p.in_grids[1])];
        if (effective(a) != effective(b)) {
          run_float();
          break;
        }
        EValue out = make_value(out_shape, a.layout, u8_out, p.out.grid);
        out.c = a.c;
        out.h = a.h;
        out.w = a.w;
        add_step(elementwise_add_step(a, b, emit(out), p.lo, p.hi));
        break;
      }
      case PlanOp::AddF32: {
        int ia = held_for_float_add(p.inputs[0]), ib = held_for_float_add(p.inputs[1]);
        if (effective(values_[ia]) != effective(values_[ib])) {
          ia = as_f32(p.inputs[0], true);
          ib = as_f32(p.inputs[1], true);
        }
        const EValue a = values_[ia], b = values_[ib];
        EValue out = make_value(out_shape, a.layout, false);
        out.c = a.c;
        out.h = a.h;
        out.w = a.w;
        // Consumers that all read one grid get the sum quantized straight onto it (uint8 maps are NHWC).
        if (u8_out && (out.shape.size() != 3 || effective(out) == Layout::NHWC || out.h * out.w == 1)) {
          out.u8 = true;
          out.grid = p.out.grid;
          add_step(elementwise_add_step(a, b, emit(out), p.lo, p.hi));
          break;
        }
        const EValue sum = emit(out);
        // Integer consumers get their quantized copies from the same pass.
        std::vector<EValue> quantized;
        for (const U8Grid& gq : grids_wanted(p.output)) {
          EValue q = sum;
          q.u8 = true;
          q.grid = gq;  // narrowed to the clamp's range (as the residual add planning expects)
          q.grid.qmin = std::max(gq.qmin, std::isfinite(p.lo) ? gq.quantize(p.lo) : gq.qmin);
          q.grid.qmax = std::min(gq.qmax, std::isfinite(p.hi) ? gq.quantize(p.hi) : gq.qmax);
          if (q.layout == Layout::Plain && q.shape.size() == 3) q.layout = Layout::NHWC;
          if (q.layout != sum.layout && !(sum.h * sum.w == 1)) continue;
          if (std::any_of(quantized.begin(), quantized.end(), [&](const EValue& o) { return o.grid == q.grid; }))
            continue;
          q.buffer = new_buffer(q.sample_bytes());
          quantized.push_back(q);
          converted_[p.output].push_back(add_value(q));
        }
        add_step(elementwise_add_step(a, b, sum, p.lo, p.hi, quantized));
        break;
      }
      case PlanOp::ConcatInt8: {
        std::vector<EValue> ins;
        for (int v : p.inputs) ins.push_back(values_[as_u8(v, p.in_grids[0])]);
        const EValue out = emit(make_value(out_shape, Layout::NHWC, true, p.out.grid));
        add_step(concat_u8_step(ins, out));
        break;
      }
      case PlanOp::ClampInt8:
      case PlanOp::Clamp: {
        const EValue in = p.op == PlanOp::ClampInt8 ? values_[as_u8(p.inputs[0], p.in_grids[0])]
                                                    : values_[native_[p.inputs[0]]];
        EValue out = in;
        if (in.u8) {
          out.grid.qmin = std::max(in.grid.qmin, in.grid.quantize(p.lo));
          if (std::isfinite(p.hi)) out.grid.qmax = std::min(in.grid.qmax, in.grid.quantize(p.hi));
        }
        out.shape = out_shape;
        add_step(clamp_step(in, emit(out), p.lo, p.hi));
        break;
      }
      case PlanOp::MaxPoolInt8:
      case PlanOp::MaxPool: {
        if (native_[p.output] >= 0) break;  // fused into the conv before it
        const int src = p.op == PlanOp::MaxPoolInt8 ? as_u8(p.inputs[0], p.in_grids[0]) : native_[p.inputs[0]];
        const EValue in = values_[src];
        const nn::Module& pool_module = p.op == PlanOp::MaxPoolInt8 ? m->child("op") : *m;
        const auto* pool = dynamic_cast<const nn::MaxPool2D*>(&pool_module);
        if (!in.u8 || in.layout != Layout::NHWC || pool == nullptr) {
          run_float();
          break;
        }
        const EValue out = emit(make_value(out_shape, Layout::NHWC, true, in.grid));
        add_step(maxpool_u8_step(in, out, pool->kernel_size(), pool->stride(), pool->padding()));
        break;
      }
      case PlanOp::GlobalPoolInt8:
      case PlanOp::GlobalPool: {
        const int src = p.op == PlanOp::GlobalPoolInt8 ? as_u8(p.inputs[0], p.in_grids[0]) : native_[p.inputs[0]];
        EValue in = values_[src];
        if (!in.u8 && effective(in) == Layout::FlatNHWC) in = values_[as_f32(p.inputs[0], true)];
        const EValue out = emit(make_value(out_shape, Layout::Plain, p.op == PlanOp::GlobalPoolInt8 && u8_out,
                                           p.out.grid));
        add_step(global_pool_step(in, out));
        break;
      }
      case PlanOp::LutInt8: {
        const EValue in = values_[as_u8(p.inputs[0], p.in_grids[0])];
        EValue out = make_value(out_shape, in.layout, u8_out, p.out.grid);
        out.c = in.c;
        out.h = in.h;
        out.w = in.w;
        add_step(lut_step(m->child("op"), in, emit(out)));
        break;
      }
      case PlanOp::Alias:
        native_[p.output] = native_[p.inputs[0]];
        break;
      case PlanOp::Reshape: {
        int src = native_[p.inputs[0]];
        EValue v = values_[src];
        const int64_t n = v.numel();
        const Layout l = effective(v);
        if (l == Layout::NHWC && out_shape.size() == 1) {
          v.layout = Layout::FlatNHWC;  // keeps c, h, w: a linear after it permutes its columns
        } else if (l == Layout::FlatNHWC && out_shape.size() == 1) {
        } else if (l != Layout::Plain) {
          v = values_[as_f32(p.inputs[0], true)];
        } else {
          v.layout = Layout::Plain;
          v.c = 0;
          v.h = v.w = 1;
          if (out_shape.size() == 3) {
            v.c = out_shape[0];
            v.h = out_shape[1];
            v.w = out_shape[2];
          }
        }
        QSLIM_CHECK(numel_of(out_shape) == n, "Int8Engine: reshape of ", shape_str(v.shape), " to ",
                    shape_str(out_shape), " changes the element count");
        v.shape = out_shape;
        native_[p.output] = add_value(v);
        break;
      }
      case PlanOp::Float:
        run_float();
        break;
    }
  }
  output_ = as_f32(g.output, true);
}

void Int8Engine::plan_buffers() {
  const int nb = static_cast<int>(buffer_bytes_.size());
  std::vector<int> last(nb, -1);
  for (size_t i = 0; i < steps_.size(); ++i) {
    for (int b : steps_[i]->reads)
      if (b >= 0) last[b] = static_cast<int>(i);
    for (int b : steps_[i]->writes)
      if (b >= 0) last[b] = std::max(last[b], static_cast<int>(i));
  }
  const int out_buffer = values_[output_].buffer;
  if (out_buffer >= 0) last[out_buffer] = static_cast<int>(steps_.size());
  if (!options_.reuse_buffers) std::fill(last.begin(), last.end(), static_cast<int>(steps_.size()));
  arena_of_.assign(nb, -1);
  std::vector<int> free_arenas;
  for (size_t i = 0; i < steps_.size(); ++i) {
    for (int b : steps_[i]->writes) {
      if (b < 0 || arena_of_[b] >= 0) continue;
      const int64_t need = buffer_bytes_[b];
      int best = -1;
      for (size_t k = 0; k < free_arenas.size(); ++k) {
        const int a = free_arenas[k];
        const bool fits = arena_bytes_[a] >= need;
        if (best < 0) {
          best = static_cast<int>(k);
          continue;
        }
        const int cur = free_arenas[best];
        const bool cur_fits = arena_bytes_[cur] >= need;
        // Smallest arena that fits; else the largest one (grown).
        if ((fits && (!cur_fits || arena_bytes_[a] < arena_bytes_[cur])) ||
            (!fits && !cur_fits && arena_bytes_[a] > arena_bytes_[cur]))
          best = static_cast<int>(k);
      }
      int arena;
      if (best >= 0) {
        arena = free_arenas[best];
        free_arenas.erase(free_arenas.begin() + best);
        arena_bytes_[arena] = std::max(arena_bytes_[arena], need);
      } else {
        arena_bytes_.push_back(need);
        arena = static_cast<int>(arena_bytes_.size()) - 1;
      }
      arena_of_[b] = arena;
    }
    std::vector<int> done;
    for (int b : steps_[i]->reads)
      if (b >= 0 && last[b] == static_cast<int>(i)) done.push_back(b);
    for (int b : steps_[i]->writes)
      if (b >= 0 && last[b] == static_cast<int>(i)) done.push_back(b);
    std::sort(done.begin(), done.end());
    done.erase(std::unique(done.begin(), done.end()), done.end());
    for (int b : done) free_arenas.push_back(arena_of_[b]);
  }
}

void Int8Engine::ensure_capacity(int64_t batch, size_t contexts) {
  if (batch <= capacity_ && contexts <= ctxs_.size()) return;
  capacity_ = std::max(capacity_, batch);
  contexts = std::max(contexts, ctxs_.size());
  arenas_.assign(contexts, {});
  ctxs_.assign(contexts, RunContext());
  for (size_t c = 0; c < contexts; ++c) {
    for (int64_t bytes : arena_bytes_) arenas_[c].push_back(Tensor::empty({(bytes * capacity_ + 3) / 4 + 16}));
    ctxs_[c].arenas.assign(buffer_bytes_.size(), Tensor());
    for (size_t b = 0; b < buffer_bytes_.size(); ++b)
      if (arena_of_[b] >= 0) ctxs_[c].arenas[b] = arenas_[c][arena_of_[b]];
  }
}

void Int8Engine::run_steps(RunContext& ctx, const Tensor& x, Tensor& y, int64_t row0) const {
  ctx.batch = x.size(0);
  ctx.input = x;
  for (const StepPtr& s : steps_) s->run(ctx);
  const EValue& out = values_[output_];
  const size_t row_bytes = static_cast<size_t>(out.numel()) * sizeof(float);
  std::memcpy(static_cast<uint8_t*>(y.raw_data()) + row0 * row_bytes, ctx.at(out.buffer), ctx.batch * row_bytes);
}

Tensor Int8Engine::run(const Tensor& x) {
  QSLIM_CHECK(x.defined() && x.dim() == static_cast<int64_t>(input_shape_.size()) + 1 && x.size(0) >= 1,
              "Int8Engine::run: expected input [N, ", shape_str(input_shape_).substr(1), " with N >= 1, got ",
              x.defined() ? shape_str(x.shape()) : std::string("no tensor"));
  QSLIM_CHECK(Shape(x.shape().begin() + 1, x.shape().end()) == input_shape_, "Int8Engine::run: input ",
              shape_str(x.shape()), " does not match the engine's per-sample shape ", shape_str(input_shape_));
  QSLIM_CHECK(x.dtype() == DType::F32, "Int8Engine::run: input must be f32, got ", dtype_name(x.dtype()));
  NoGradGuard no_grad;
  const int64_t batch = x.size(0);
  const Tensor xc = x.contiguous();
  Shape shape{batch};
  shape.insert(shape.end(), values_[output_].shape.begin(), values_[output_].shape.end());
  Tensor y = Tensor::empty(shape);
  last_batch_ = batch;
  const bool tiled = options_.reuse_buffers && tile_ > 0 && batch > tile_;
  if (!tiled) {
    ensure_capacity(batch, 1);
    run_steps(ctxs_[0], xc, y, 0);
    if (options_.reuse_buffers) ctxs_[0].input = Tensor();
    return y;
  }
  // As many tiles as tile_ allows, rounded up to a multiple of the workers, of equal size: 256
  // images with tiles of up to 188 on 2 threads run as 2 x 128, not as 188 + 68.
  const int64_t threads = has_float_steps_ ? 1 : cpu::pool_threads();
  int64_t tiles = (batch + tile_ - 1) / tile_;
  if (threads > 1) tiles = std::min(batch, (tiles + threads - 1) / threads * threads);
  const int64_t tile = (batch + tiles - 1) / tiles;
  tiles = (batch + tile - 1) / tile;
  const int64_t workers = std::min(threads, tiles);
  ensure_capacity(tile, static_cast<size_t>(workers));
  std::atomic<int64_t> next{0};
  cpu::run_tasks(workers, [&](int64_t w) {
    NoGradGuard task_no_grad;
    for (int64_t t = next++; t < tiles; t = next++) {
      const int64_t row0 = t * tile, rows = std::min(tile, batch - row0);
      run_steps(ctxs_[w], xc.narrow(0, row0, rows), y, row0);
    }
    ctxs_[w].input = Tensor();
  });
  return y;
}

Tensor Int8Engine::inspect(int traced_value) const {
  QSLIM_CHECK(traced_value >= 0 && traced_value < static_cast<int>(native_.size()), "Int8Engine::inspect: value ",
              traced_value, " out of range (", native_.size(), " values)");
  QSLIM_CHECK(last_batch_ > 0, "Int8Engine::inspect: run the engine first");
  QSLIM_CHECK(!options_.reuse_buffers, "Int8Engine::inspect: build the engine with reuse_buffers = false to keep "
              "the values of a run");
  const int id = native_[traced_value];
  QSLIM_CHECK(id >= 0, "Int8Engine::inspect: value ", traced_value,
              " is not held by the engine (fused into the step that consumes it)");
  const EValue& v = values_[id];
  const int64_t n = last_batch_, numel = v.numel();
  const void* src = v.buffer < 0 ? ctxs_[0].input.raw_data() : ctxs_[0].at(v.buffer);
  std::vector<float> flat(n * numel);
  for (int64_t i = 0; i < n * numel; ++i)
    flat[i] = v.u8 ? (static_cast<const uint8_t*>(src)[i] - v.grid.zero_point) * v.grid.scale
                   : static_cast<const float*>(src)[i];
  std::vector<float> out(flat.size());
  const Layout l = v.h * v.w == 1 ? Layout::Plain : v.layout;
  if (l == Layout::Plain) {
    out = flat;
  } else {
    const int64_t c = v.c, hw = v.h * v.w;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t p = 0; p < hw; ++p)
        for (int64_t ch = 0; ch < c; ++ch) out[(b * c + ch) * hw + p] = flat[(b * hw + p) * c + ch];
  }
  Shape s{n};
  s.insert(s.end(), v.shape.begin(), v.shape.end());
  return from_vector(out, s);
}

std::vector<std::pair<std::string, double>> Int8Engine::profile(const Tensor& x, int reps) {
  run(x);  // checks the input
  NoGradGuard no_grad;
  ensure_capacity(x.size(0), 1);
  RunContext& ctx = ctxs_[0];
  ctx.batch = x.size(0);
  ctx.input = x.contiguous();
  std::vector<std::vector<double>> t(steps_.size());
  for (int r = 0; r < std::max(1, reps); ++r) {
    for (size_t i = 0; i < steps_.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      steps_[i]->run(ctx);
      t[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::vector<std::pair<std::string, double>> out;
  for (size_t i = 0; i < steps_.size(); ++i) {
    std::sort(t[i].begin(), t[i].end());
    out.emplace_back(steps_[i]->describe(), t[i][t[i].size() / 2]);
  }
  if (options_.reuse_buffers) ctx.input = Tensor();
  return out;
}

std::string Int8Engine::describe() const {
  std::ostringstream os;
  for (size_t i = 0; i < steps_.size(); ++i) os << i << ": " << steps_[i]->describe() << "\n";
  return os.str();
}

int Int8Engine::count_steps(const std::string& prefix) const {
  int n = 0;
  for (const StepPtr& s : steps_) n += s->describe().rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

size_t Int8Engine::buffer_bytes() const {
  size_t total = 0;
  for (const auto& set : arenas_)
    for (const Tensor& t : set) total += t.nbytes();
  return total;
}

}  // namespace qslim::quant
