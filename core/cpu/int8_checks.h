// Internal: argument checks shared by the INT8 convolution and pooling kernels (int8_conv.h).
#pragma once
#include <cstdint>

#include "core/cpu/int8_conv.h"
#include "core/error.h"

namespace qslim::cpu::int8_checks {

inline void geometry(const char* op, const Int8ConvGeometry& g) {
  QSLIM_CHECK(g.batch >= 0 && g.in_h > 0 && g.in_w > 0 && g.in_c > 0 && g.out_c > 0, op, ": input [", g.batch, ", ",
              g.in_h, ", ", g.in_w, ", ", g.in_c, "] -> ", g.out_c,
              " channels: expected positive sizes (batch may be 0)");
  QSLIM_CHECK(g.kernel_h > 0 && g.kernel_w > 0 && g.stride_h > 0 && g.stride_w > 0 && g.dilation_h > 0 &&
                  g.dilation_w > 0 && g.pad_h >= 0 && g.pad_w >= 0,
              op, ": kernel ", g.kernel_h, "x", g.kernel_w, ", stride ", g.stride_h, "x", g.stride_w, ", dilation ",
              g.dilation_h, "x", g.dilation_w, ", padding ", g.pad_h, "x", g.pad_w,
              ": expected positive kernel, stride and dilation and non-negative padding");
  QSLIM_CHECK(g.out_h() > 0 && g.out_w() > 0, op, ": input ", g.in_h, "x", g.in_w, " with padding ", g.pad_h, "x",
              g.pad_w, " is smaller than the dilated kernel ", g.dilation_h * (g.kernel_h - 1) + 1, "x",
              g.dilation_w * (g.kernel_w - 1) + 1);
}

inline void u8_output(const char* op, const Int8Output& out) {
  QSLIM_CHECK(0 <= out.qmin && out.qmin <= out.qmax && out.qmax <= 255, op, ": uint8 output needs 0 <= qmin <= qmax <= 255, got [",
              out.qmin, ", ", out.qmax, "]");
}

}  // namespace qslim::cpu::int8_checks
