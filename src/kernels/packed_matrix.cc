#include "kernels/packed_matrix.h"

#include <string>

#include "kernels/bf16.h"

namespace kvmart {

StatusOr<PackedMatrix> PackedMatrix::Pack(const void* src, WeightDtype dtype, size_t rows, size_t cols) {
  if (rows == 0 || cols == 0 || rows % kPanelRows != 0) {
    return Status::InvalidArgument("matrix of " + std::to_string(rows) + "x" + std::to_string(cols) +
                                   ": rows must be a positive multiple of 16");
  }
  PackedMatrix m;
  m.rows_ = rows;
  m.cols_ = cols;
  const size_t panels = rows / kPanelRows;
  if (dtype == WeightDtype::kBf16) {
    m.format_ = Format::kBf16;
    m.bf16_ = AlignedBuffer<uint16_t>(rows * cols);
    const auto* s = static_cast<const uint16_t*>(src);
    for (size_t p = 0; p < panels; ++p) {
      uint16_t* dst = m.bf16_.data() + p * cols * kPanelRows;
      for (size_t r = 0; r < kPanelRows; ++r) {
        const uint16_t* row = s + (p * kPanelRows + r) * cols;
        const size_t lane = Bf16PanelLane(r);
        for (size_t k = 0; k < cols; ++k) dst[k * kPanelRows + lane] = row[k];
      }
    }
  } else {
    m.format_ = Format::kF32;
    m.f32_ = AlignedBuffer<float>(rows * cols);
    for (size_t p = 0; p < panels; ++p) {
      float* dst = m.f32_.data() + p * cols * kPanelRows;
      for (size_t r = 0; r < kPanelRows; ++r) {
        const size_t row = p * kPanelRows + r;
        for (size_t k = 0; k < cols; ++k) {
          float v;
          if (dtype == WeightDtype::kF16) {
            v = F16ToF32(static_cast<const uint16_t*>(src)[row * cols + k]);
          } else {
            v = static_cast<const float*>(src)[row * cols + k];
          }
          dst[k * kPanelRows + r] = v;
        }
      }
    }
  }
  return m;
}

float PackedMatrix::At(size_t row, size_t col) const {
  const size_t p = row / kPanelRows, r = row % kPanelRows;
  if (format_ == Format::kBf16) return Bf16ToF32(bf16_panel(p)[col * kPanelRows + Bf16PanelLane(r)]);
  return f32_panel(p)[col * kPanelRows + r];
}

}  // namespace kvmart
