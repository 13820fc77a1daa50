// The GGUF container (version 3), the file format llama.cpp loads: a header of
// typed key/value metadata, a table of tensor descriptions, then the tensor
// bytes at aligned offsets. kvmart writes it to hand the exact weights of a
// checkpoint to llama.cpp (the peer in kvmart-bench-peer) and reads it back to
// check what it wrote.
//
// Reading checks every declared length and count against the bytes that are
// really there before allocating, so a truncated or hostile file is a
// Corruption error, never a crash or a huge allocation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "model/mapped_file.h"

namespace kvmart::gguf {

// Value types as numbered by the format.
enum class ValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

// Tensor element types (ggml's numbering) that kvmart writes.
enum class TensorType : uint32_t { kF32 = 0, kF16 = 1, kBf16 = 30 };
const char* TensorTypeName(TensorType t);
size_t TensorTypeSize(TensorType t);

// A scalar, a string, or an array of one of those. Integers are widened to
// 64 bits and floats to double in memory; `type` (and `element_type` for
// arrays) say how they are stored in the file.
struct Value {
  ValueType type = ValueType::kUint32;
  ValueType element_type = ValueType::kUint32;  // arrays only
  std::variant<int64_t, uint64_t, double, bool, std::string> scalar;
  std::vector<std::variant<int64_t, uint64_t, double, bool, std::string>> array;

  static Value U32(uint32_t v) { return {ValueType::kUint32, ValueType::kUint32, uint64_t{v}, {}}; }
  static Value I32(int32_t v) { return {ValueType::kInt32, ValueType::kInt32, int64_t{v}, {}}; }
  static Value F32(float v) { return {ValueType::kFloat32, ValueType::kFloat32, double{v}, {}}; }
  static Value Bool(bool v) { return {ValueType::kBool, ValueType::kBool, v, {}}; }
  static Value Str(std::string v) { return {ValueType::kString, ValueType::kString, std::move(v), {}}; }
  static Value StrArray(std::vector<std::string> v);
  static Value I32Array(const std::vector<int32_t>& v);
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the contiguous one
  TensorType type = TensorType::kF32;
  uint64_t offset = 0;         // from the start of the data section
  uint64_t nbytes() const;
};

// Writes a GGUF file: Add metadata and tensors (whose bytes must stay alive
// until Finish), then Finish writes PATH.tmp and renames it into place.
class Writer {
 public:
  static constexpr uint32_t kAlignment = 32;
  void AddValue(std::string key, Value value);
  // `bytes` must hold exactly the tensor's nbytes().
  Status AddTensor(std::string name, std::vector<uint64_t> dims, TensorType type, std::string_view bytes);
  // An owned copy (e.g. norms widened to f32).
  Status AddTensor(std::string name, std::vector<uint64_t> dims, TensorType type, std::vector<uint8_t> bytes);
  Status Finish(const std::string& path);

 private:
  std::vector<std::pair<std::string, Value>> values_;
  std::vector<TensorInfo> tensors_;
  std::vector<std::string_view> data_;
  std::vector<std::vector<uint8_t>> owned_;
};

// A GGUF file mapped read-only.
class File {
 public:
  static StatusOr<File> Open(const std::string& path);

  uint32_t version() const { return version_; }
  const std::map<std::string, Value>& values() const { return values_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const Value* Find(std::string_view key) const;
  const TensorInfo* FindTensor(std::string_view name) const;
  // The bytes of a tensor (checked to lie inside the file at Open).
  std::string_view TensorBytes(const TensorInfo& t) const;

 private:
  MappedFile map_;
  uint32_t version_ = 0;
  std::map<std::string, Value> values_;
  std::vector<TensorInfo> tensors_;
  uint64_t data_offset_ = 0;
};

}  // namespace kvmart::gguf
