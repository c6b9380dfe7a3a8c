// Pixel-level helpers shared by the image datasets and the batch transforms: channel conversion of
// decoded (interleaved) pixels and bilinear resampling of image planes.
#pragma once
#include <cstdint>

namespace qslim::data {

// Luma weights of ITU-R BT.601 (PIL's convert("L")): gray = 0.299 R + 0.587 G + 0.114 B.
inline constexpr float kLumaR = 0.299f, kLumaG = 0.587f, kLumaB = 0.114f;

// Gray value of one RGB pixel with PIL's integer rounding: (R*19595 + G*38470 + B*7471 + 2^15) >> 16.
inline uint8_t luma_u8(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// Converts an interleaved image [height, width, in_channels] (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) into
// planes [out_channels, height, width] with out_channels 1 (gray) or 3 (RGB). Alpha is dropped, gray is
// replicated to RGB and RGB becomes gray with luma_u8. Checks its arguments (qslim::Error).
void interleaved_to_planes(const uint8_t* src, int64_t height, int64_t width, int in_channels, uint8_t* dst,
                           int out_channels);

// Resamples `planes` images [in_h, in_w] to [out_h, out_w] with a bilinear (triangle) filter and
// half-pixel centres, as PIL's and torchvision's bilinear resize. With `antialias` the filter widens by
// the scale factor when shrinking, so every input pixel contributes (PIL, torchvision antialias=True);
// without it each output pixel blends its 2x2 nearest inputs (torch interpolate align_corners=False,
// OpenCV INTER_LINEAR). Enlarging is the same either way. The u8 version computes in f32 and rounds to
// the nearest value. `dst` must not overlap `src`.
void resize_planes(const float* src, int64_t planes, int64_t in_h, int64_t in_w, float* dst, int64_t out_h,
                   int64_t out_w, bool antialias = true);
void resize_planes(const uint8_t* src, int64_t planes, int64_t in_h, int64_t in_w, uint8_t* dst, int64_t out_h,
                   int64_t out_w, bool antialias = true);

}  // namespace qslim::data
