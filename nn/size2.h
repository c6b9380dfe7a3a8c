// A (height, width) pair that converts from one integer, so layers read like PyTorch's:
// Conv2D(3, 8, 3, 1, 1) or Conv2D(3, 8, {3, 1}).
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace qslim::nn {

struct Size2 {
  int64_t h = 0, w = 0;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT(google-explicit-constructor): intended conversion
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  std::array<int64_t, 2> arr() const { return {h, w}; }
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
  std::string str() const {
    std::string s = "(";
    s.append(std::to_string(h)).append(", ").append(std::to_string(w)).append(")");
    return s;
  }
};

}  // namespace qslim::nn
