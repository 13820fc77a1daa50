// Weights of a linear layer, y = x · Wᵀ with W of shape [rows][cols], repacked
// once at load time into panels of 16 rows so that a kernel can vectorise across
// *outputs* (rows) while walking the reduction index (cols) sequentially.
//
// Panel layout (kBf16): panel p holds rows 16p..16p+15; for each column k it
// stores 16 bf16 values, interleaved so that 32-bit lane i holds row 16p+i in its
// low half and row 16p+8+i in its high half. One 32-byte load then widens to two
// f32 vectors with a shift and a mask — no shuffles. kF32 stores 16 f32 values
// per column in row order (used for f16 and f32 checkpoints; f16 widens exactly).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/status.h"
#include "kernels/aligned_buffer.h"

namespace kvmart {

enum class WeightDtype { kBf16, kF16, kF32 };

class PackedMatrix {
 public:
  static constexpr size_t kPanelRows = 16;
  enum class Format { kBf16, kF32 };

  PackedMatrix() = default;
  // `src` is row-major [rows][cols] in `dtype`. rows must be a multiple of 16.
  static StatusOr<PackedMatrix> Pack(const void* src, WeightDtype dtype, size_t rows, size_t cols);

  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  size_t num_panels() const { return rows_ / kPanelRows; }
  Format format() const { return format_; }
  // Start of panel p: cols*16 elements of uint16_t (kBf16) or float (kF32).
  const uint16_t* bf16_panel(size_t p) const { return bf16_.data() + p * cols_ * kPanelRows; }
  const float* f32_panel(size_t p) const { return f32_.data() + p * cols_ * kPanelRows; }
  // Element (row, col), widened to f32 (for the portable path and tests).
  float At(size_t row, size_t col) const;

 private:
  size_t rows_ = 0, cols_ = 0;
  Format format_ = Format::kBf16;
  AlignedBuffer<uint16_t> bf16_;
  AlignedBuffer<float> f32_;
};

// Lane of row r (0..15) inside a bf16 panel column (see layout above).
inline constexpr size_t Bf16PanelLane(size_t r) { return r < 8 ? 2 * r : 2 * (r - 8) + 1; }

}  // namespace kvmart
