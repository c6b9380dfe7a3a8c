// INT8 GEMM: ISA selection, weight packing, argument checks, threading and the scalar path. The
// SIMD block kernels live in int8_gemm_vnni.cpp and int8_gemm_avx2.cpp (layouts: int8_gemm_kernels.h).
#include "core/cpu/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu/int8_gemm_kernels.h"
#include "core/cpu/thread_pool.h"
#include "core/error.h"

namespace qslim::cpu {

using namespace int8_detail;

bool int8_isa_supported(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::Scalar:
      return true;
    case Int8Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Int8Isa::Avx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

Int8Isa best_int8_isa() {
  static const Int8Isa best = int8_isa_supported(Int8Isa::Avx512Vnni) ? Int8Isa::Avx512Vnni
                              : int8_isa_supported(Int8Isa::Avx2)     ? Int8Isa::Avx2
                                                                      : Int8Isa::Scalar;
  return best;
}

const char* int8_isa_name(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::Scalar:
      return "scalar";
    case Int8Isa::Avx2:
      return "avx2";
    case Int8Isa::Avx512Vnni:
      return "avx512-vnni";
  }
  return "unknown";
}

namespace int8_detail {

int64_t row_unit(Int8Isa isa) { return isa == Int8Isa::Scalar ? 1 : 6; }
int64_t column_unit(Int8Isa isa) {
  return isa == Int8Isa::Avx512Vnni ? 4 * kVnniBlock : isa == Int8Isa::Avx2 ? 2 * kAvx2Block : 16;
}

void gemm_block_scalar(const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out,
                       int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int8_t* wp = packed_base(w);
  for (int64_t i = m0; i < m1; ++i) {
    const uint8_t* ar = a + i * lda;
    for (int64_t j = n0; j < n1; ++j) {
      const int8_t* wr = wp + j * w.k;
      int32_t acc = 0;
      for (int64_t p = 0; p < w.k; ++p) acc += static_cast<int32_t>(ar[p]) * static_cast<int32_t>(wr[p]);
      store_one(out, i, j, acc);
    }
  }
}

OutputStage make_output_stage(OutKind kind, const PackedInt8Weights& w, const Int8Output& out, void* c,
                              int64_t ldc) {
  OutputStage s;
  s.kind = kind;
  s.bias = w.bias.data();
  s.multiplier = w.multiplier.data();
  s.zero_point = out.zero_point;
  s.qlo = static_cast<float>(static_cast<int64_t>(out.qmin) - out.zero_point);
  s.qhi = static_cast<float>(static_cast<int64_t>(out.qmax) - out.zero_point);
  s.fmin = out.fmin;
  s.fmax = out.fmax;
  s.c = c;
  s.ldc = ldc;
  return s;
}

}  // namespace int8_detail

namespace {

// Bytes of the packed layout (see int8_gemm_kernels.h).
int64_t packed_bytes(Int8Isa isa, int64_t n, int64_t k) {
  switch (isa) {
    case Int8Isa::Avx512Vnni:
      return round_up(n, kVnniBlock) * round_up(k, 4);
    case Int8Isa::Avx2:
      return round_up(n, kAvx2Block) * round_up(k, 2) * 2;
    case Int8Isa::Scalar:
      break;
  }
  return n * k;
}

void pack_layout(Int8Isa isa, const int8_t* w, int64_t n, int64_t k, int64_t ldw, int8_t* dst) {
  if (isa == Int8Isa::Scalar) {
    for (int64_t j = 0; j < n; ++j) std::memcpy(dst + j * k, w + j * ldw, static_cast<size_t>(k));
    return;
  }
  if (isa == Int8Isa::Avx512Vnni) {
    const int64_t kp = round_up(k, 4);
    for (int64_t j = 0; j < n; ++j) {
      int8_t* block = dst + (j / kVnniBlock) * kp * kVnniBlock;
      const int64_t lane = j % kVnniBlock;
      for (int64_t p = 0; p < k; ++p) block[(p / 4) * 64 + lane * 4 + p % 4] = w[j * ldw + p];
    }
    return;
  }
  const int64_t kp = round_up(k, 2);
  int16_t* d16 = reinterpret_cast<int16_t*>(dst);
  for (int64_t j = 0; j < n; ++j) {
    int16_t* block = d16 + (j / kAvx2Block) * kp * kAvx2Block;
    const int64_t lane = j % kAvx2Block;
    for (int64_t p = 0; p < k; ++p) block[(p / 2) * 16 + lane * 2 + p % 2] = w[j * ldw + p];
  }
}

// Largest k for which no int32 accumulator can overflow (255 * 128 * k < 2^31).
constexpr int64_t kMaxK = 65793;

}  // namespace

PackedInt8Weights pack_int8_weights(const int8_t* w, int64_t n, int64_t k, int64_t ldw, const int32_t* bias_q,
                                    int32_t a_zero_point, const float* multiplier, int64_t multiplier_count,
                                    Int8Isa isa) {
  QSLIM_CHECK(int8_isa_supported(isa), "pack_int8_weights: ISA ", int8_isa_name(isa),
              " is not supported by this CPU (best available: ", int8_isa_name(best_int8_isa()), ")");
  QSLIM_CHECK(n > 0 && k > 0, "pack_int8_weights: weight must be non-empty, got n=", n, " k=", k);
  QSLIM_CHECK(k <= kMaxK, "pack_int8_weights: k=", k, " exceeds ", kMaxK,
              " (int32 accumulators of uint8 x int8 products could overflow)");
  QSLIM_CHECK(ldw >= k, "pack_int8_weights: row stride ldw=", ldw, " is smaller than k=", k);
  QSLIM_CHECK(w != nullptr && multiplier != nullptr, "pack_int8_weights: null weight or multiplier pointer");
  QSLIM_CHECK(multiplier_count == n || multiplier_count == 1, "pack_int8_weights: ", multiplier_count,
              " multipliers for ", n, " output channels (expected ", n, " or 1)");
  QSLIM_CHECK(a_zero_point >= 0 && a_zero_point <= 255, "pack_int8_weights: activation zero point ", a_zero_point,
              " is outside the uint8 range [0, 255]");
  PackedInt8Weights p;
  p.n = n;
  p.k = k;
  p.isa = isa;
  p.a_zero_point = a_zero_point;
  const int64_t bytes = packed_bytes(isa, n, k);
  p.data.assign(static_cast<size_t>(bytes + 64), 0);
  p.data_offset = static_cast<int64_t>((64 - reinterpret_cast<uintptr_t>(p.data.data()) % 64) % 64);
  pack_layout(isa, w, n, k, ldw, p.data.data() + p.data_offset);
  p.row_sums.resize(n);
  p.bias.resize(n);
  p.multiplier.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    int64_t s = 0;
    for (int64_t q = 0; q < k; ++q) s += w[j * ldw + q];
    const int64_t packed = (bias_q ? bias_q[j] : 0) - static_cast<int64_t>(a_zero_point) * s;
    QSLIM_CHECK(packed >= INT32_MIN && packed <= INT32_MAX, "pack_int8_weights: packed bias of channel ", j, " (",
                packed, ") overflows int32");
    p.row_sums[j] = static_cast<int32_t>(s);
    p.bias[j] = static_cast<int32_t>(packed);
    p.multiplier[j] = multiplier[multiplier_count == 1 ? 0 : j];
  }
  return p;
}

namespace {

// Products with fewer multiply-adds run on the calling thread: splitting costs more than it saves.
constexpr double kParallelMacs = 1 << 21;

void check_args(const char* op, int64_t m, const void* a, int64_t lda, const PackedInt8Weights& w, const void* c,
                int64_t ldc) {
  QSLIM_CHECK(!w.empty(), op, ": weights are not packed");
  QSLIM_CHECK(int8_isa_supported(w.isa), op, ": weights were packed for ", int8_isa_name(w.isa),
              ", which this CPU does not support");
  QSLIM_CHECK(static_cast<int64_t>(w.data.size()) >= packed_bytes(w.isa, w.n, w.k) + w.data_offset &&
                  static_cast<int64_t>(w.bias.size()) == w.n && static_cast<int64_t>(w.multiplier.size()) == w.n,
              op, ": packed weights are inconsistent with n=", w.n, " k=", w.k);
  QSLIM_CHECK(m >= 0, op, ": negative row count m=", m);
  QSLIM_CHECK(lda >= w.k, op, ": lda=", lda, " is smaller than k=", w.k);
  QSLIM_CHECK(ldc >= w.n, op, ": ldc=", ldc, " is smaller than n=", w.n);
  QSLIM_CHECK(m == 0 || (a != nullptr && c != nullptr), op, ": null A or C pointer with m=", m);
}

void check_quantized(const char* op, const Int8Output& out, int32_t lo, int32_t hi) {
  QSLIM_CHECK(out.qmin >= lo && out.qmax <= hi && out.qmin <= out.qmax, op, ": output range [", out.qmin, ", ",
              out.qmax, "] must lie within [", lo, ", ", hi, "] and be non-empty");
}

void run(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const OutputStage& out) {
  if (m == 0) return;
  auto block = w.isa == Int8Isa::Avx512Vnni ? &gemm_block_vnni
               : w.isa == Int8Isa::Avx2     ? &gemm_block_avx2
                                            : &gemm_block_scalar;
  const int64_t threads = pool_threads();
  const double macs = static_cast<double>(m) * w.n * w.k;
  if (threads <= 1 || macs < kParallelMacs || in_parallel()) return block(a, lda, w, out, 0, m, 0, w.n);
  // A few tasks per thread (a descheduled thread's share is picked up by the others): rows first,
  // columns as well when there are too few rows (small batches).
  const int64_t ru = row_unit(w.isa), cu = column_unit(w.isa);
  const int64_t row_units = (m + ru - 1) / ru, col_units = (w.n + cu - 1) / cu;
  const int64_t target = 3 * threads;
  const int64_t rt = std::min(row_units, target);
  const int64_t ct = std::min(col_units, (target + rt - 1) / rt);
  run_tasks(rt * ct, [&](int64_t t) {
    const int64_t r = t / ct, c = t % ct;
    const int64_t m0 = std::min(m, row_units * r / rt * ru), m1 = std::min(m, row_units * (r + 1) / rt * ru);
    const int64_t n0 = std::min(w.n, col_units * c / ct * cu), n1 = std::min(w.n, col_units * (c + 1) / ct * cu);
    if (m0 < m1 && n0 < n1) block(a, lda, w, out, m0, m1, n0, n1);
  });
}

}  // namespace


void gemm_u8s8_u8(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out,
                  uint8_t* c, int64_t ldc) {
  check_args("gemm_u8s8_u8", m, a, lda, w, c, ldc);
  check_quantized("gemm_u8s8_u8", out, 0, 255);
  run(m, a, lda, w, make_output_stage(OutKind::U8, w, out, c, ldc));
}

void gemm_u8s8_s8(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out,
                  int8_t* c, int64_t ldc) {
  check_args("gemm_u8s8_s8", m, a, lda, w, c, ldc);
  check_quantized("gemm_u8s8_s8", out, -128, 127);
  run(m, a, lda, w, make_output_stage(OutKind::S8, w, out, c, ldc));
}

void gemm_u8s8_f32(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, const Int8Output& out,
                   float* c, int64_t ldc) {
  check_args("gemm_u8s8_f32", m, a, lda, w, c, ldc);
  QSLIM_CHECK(!(out.fmin > out.fmax), "gemm_u8s8_f32: float clamp [", out.fmin, ", ", out.fmax, "] is empty");
  run(m, a, lda, w, make_output_stage(OutKind::F32, w, out, c, ldc));
}

void gemm_u8s8_s32(int64_t m, const uint8_t* a, int64_t lda, const PackedInt8Weights& w, int32_t* c, int64_t ldc) {
  check_args("gemm_u8s8_s32", m, a, lda, w, c, ldc);
  OutputStage s;
  s.kind = OutKind::S32;
  s.c = c;
  s.ldc = ldc;
  run(m, a, lda, w, s);
}

void gemm_u8s8_reference_f32(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* w,
                             int64_t ldw, const int32_t* bias_q, int32_t a_zero_point, const float* multiplier,
                             int64_t multiplier_count, const Int8Output& out, float* c, int64_t ldc) {
  QSLIM_CHECK(multiplier_count == n || multiplier_count == 1, "gemm_u8s8_reference_f32: ", multiplier_count,
              " multipliers for n=", n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0, row_sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        acc += static_cast<int64_t>(a[i * lda + p]) * w[j * ldw + p];
        row_sum += w[j * ldw + p];
      }
      const int64_t packed_bias = (bias_q ? bias_q[j] : 0) - static_cast<int64_t>(a_zero_point) * row_sum;
      const float v = static_cast<float>(acc + packed_bias) * multiplier[multiplier_count == 1 ? 0 : j];
      c[i * ldc + j] = std::min(std::max(v, out.fmin), out.fmax);
    }
}

}  // namespace qslim::cpu
