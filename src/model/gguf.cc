#include "model/gguf.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace kvmart::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kVersion = 3;

// Appends little-endian scalars to a byte buffer (x86-64 and aarch64 are little-endian).
struct Sink {
  std::string out;
  template <typename T>
  void Put(T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void PutString(std::string_view s) {
    Put<uint64_t>(s.size());
    out.append(s);
  }
};

using Scalar = std::variant<int64_t, uint64_t, double, bool, std::string>;

void PutScalar(Sink& s, ValueType t, const Scalar& v) {
  auto i = [&] { return std::holds_alternative<int64_t>(v) ? std::get<int64_t>(v) : static_cast<int64_t>(std::get<uint64_t>(v)); };
  auto u = [&] { return std::holds_alternative<uint64_t>(v) ? std::get<uint64_t>(v) : static_cast<uint64_t>(std::get<int64_t>(v)); };
  switch (t) {
    case ValueType::kUint8: s.Put<uint8_t>(static_cast<uint8_t>(u())); break;
    case ValueType::kInt8: s.Put<int8_t>(static_cast<int8_t>(i())); break;
    case ValueType::kUint16: s.Put<uint16_t>(static_cast<uint16_t>(u())); break;
    case ValueType::kInt16: s.Put<int16_t>(static_cast<int16_t>(i())); break;
    case ValueType::kUint32: s.Put<uint32_t>(static_cast<uint32_t>(u())); break;
    case ValueType::kInt32: s.Put<int32_t>(static_cast<int32_t>(i())); break;
    case ValueType::kUint64: s.Put<uint64_t>(u()); break;
    case ValueType::kInt64: s.Put<int64_t>(i()); break;
    case ValueType::kFloat32: s.Put<float>(static_cast<float>(std::get<double>(v))); break;
    case ValueType::kFloat64: s.Put<double>(std::get<double>(v)); break;
    case ValueType::kBool: s.Put<uint8_t>(std::get<bool>(v) ? 1 : 0); break;
    case ValueType::kString: s.PutString(std::get<std::string>(v)); break;
    case ValueType::kArray: break;  // arrays of arrays are not written
  }
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Reads from a mapped file with every length checked against what is left.
class Source {
 public:
  Source(const uint8_t* data, size_t size) : p_(data), end_(data + size), begin_(data) {}
  uint64_t pos() const { return static_cast<uint64_t>(p_ - begin_); }
  uint64_t left() const { return static_cast<uint64_t>(end_ - p_); }

  template <typename T>
  Status Get(T* v, const char* what) {
    if (left() < sizeof(T)) return Truncated(what);
    std::memcpy(v, p_, sizeof(T));
    p_ += sizeof(T);
    return Status::Ok();
  }
  Status GetString(std::string* s, const char* what) {
    uint64_t n = 0;
    KVMART_RETURN_IF_ERROR(Get(&n, what));
    if (n > left()) return Status::Corruption(std::string("gguf: ") + what + " declares " + std::to_string(n) +
                                              " bytes, " + std::to_string(left()) + " left in the file");
    s->assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return Status::Ok();
  }

 private:
  Status Truncated(const char* what) const {
    return Status::Corruption(std::string("gguf: truncated at offset ") + std::to_string(pos()) + " reading " + what);
  }
  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* begin_;
};

// Smallest number of bytes one element of type t takes in the file, to bound
// an array's declared count before reserving memory for it.
uint64_t MinSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
    case ValueType::kUint16: case ValueType::kInt16: return 2;
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
    case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: case ValueType::kString: return 8;
    case ValueType::kArray: return 12;
  }
  return 1;
}

// Reads one stored T and widens it to the in-memory type W.
template <typename T, typename W>
Status GetAs(Source& src, Scalar* v) {
  T x{};
  KVMART_RETURN_IF_ERROR(src.Get(&x, "value"));
  *v = static_cast<W>(x);
  return Status::Ok();
}

Status GetScalar(Source& src, ValueType t, Scalar* v) {
  switch (t) {
    case ValueType::kUint8: return GetAs<uint8_t, uint64_t>(src, v);
    case ValueType::kInt8: return GetAs<int8_t, int64_t>(src, v);
    case ValueType::kUint16: return GetAs<uint16_t, uint64_t>(src, v);
    case ValueType::kInt16: return GetAs<int16_t, int64_t>(src, v);
    case ValueType::kUint32: return GetAs<uint32_t, uint64_t>(src, v);
    case ValueType::kInt32: return GetAs<int32_t, int64_t>(src, v);
    case ValueType::kUint64: return GetAs<uint64_t, uint64_t>(src, v);
    case ValueType::kInt64: return GetAs<int64_t, int64_t>(src, v);
    case ValueType::kFloat32: return GetAs<float, double>(src, v);
    case ValueType::kFloat64: return GetAs<double, double>(src, v);
    case ValueType::kBool: {
      uint8_t x = 0;
      KVMART_RETURN_IF_ERROR(src.Get(&x, "value"));
      if (x > 1) return Status::Corruption("gguf: bool value " + std::to_string(x));
      *v = x == 1;
      return Status::Ok();
    }
    case ValueType::kString: {
      std::string s;
      KVMART_RETURN_IF_ERROR(src.GetString(&s, "string value"));
      *v = std::move(s);
      return Status::Ok();
    }
    case ValueType::kArray: break;
  }
  return Status::Corruption("gguf: value type " + std::to_string(static_cast<uint32_t>(t)) + " not allowed here");
}

bool KnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kFloat64); }

}  // namespace

const char* TensorTypeName(TensorType t) {
  switch (t) {
    case TensorType::kF32: return "F32";
    case TensorType::kF16: return "F16";
    case TensorType::kBf16: return "BF16";
  }
  return "?";
}

size_t TensorTypeSize(TensorType t) { return t == TensorType::kF32 ? 4 : 2; }

uint64_t TensorInfo::nbytes() const {
  uint64_t n = TensorTypeSize(type);
  for (uint64_t d : dims) n *= d;
  return n;
}

Value Value::StrArray(std::vector<std::string> v) {
  Value out{ValueType::kArray, ValueType::kString, uint64_t{0}, {}};
  out.array.reserve(v.size());
  for (auto& s : v) out.array.emplace_back(std::move(s));
  return out;
}

Value Value::I32Array(const std::vector<int32_t>& v) {
  Value out{ValueType::kArray, ValueType::kInt32, uint64_t{0}, {}};
  out.array.reserve(v.size());
  for (int32_t x : v) out.array.emplace_back(int64_t{x});
  return out;
}

void Writer::AddValue(std::string key, Value value) { values_.emplace_back(std::move(key), std::move(value)); }

Status Writer::AddTensor(std::string name, std::vector<uint64_t> dims, TensorType type, std::string_view bytes) {
  TensorInfo t{std::move(name), std::move(dims), type, 0};
  if (t.nbytes() != bytes.size()) {
    return Status::InvalidArgument("gguf: tensor " + t.name + " has " + std::to_string(bytes.size()) +
                                   " bytes, its shape and type need " + std::to_string(t.nbytes()));
  }
  uint64_t offset = 0;
  if (!tensors_.empty()) offset = AlignUp(tensors_.back().offset + tensors_.back().nbytes(), kAlignment);
  t.offset = offset;
  tensors_.push_back(std::move(t));
  data_.push_back(bytes);
  return Status::Ok();
}

Status Writer::AddTensor(std::string name, std::vector<uint64_t> dims, TensorType type, std::vector<uint8_t> bytes) {
  owned_.push_back(std::move(bytes));
  const auto& b = owned_.back();
  return AddTensor(std::move(name), std::move(dims), type,
                   std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

Status Writer::Finish(const std::string& path) {
  Sink head;
  head.Put<uint32_t>(kMagic);
  head.Put<uint32_t>(kVersion);
  head.Put<uint64_t>(tensors_.size());
  head.Put<uint64_t>(values_.size());
  for (const auto& [key, v] : values_) {
    head.PutString(key);
    head.Put<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.type == ValueType::kArray) {
      head.Put<uint32_t>(static_cast<uint32_t>(v.element_type));
      head.Put<uint64_t>(v.array.size());
      for (const auto& e : v.array) PutScalar(head, v.element_type, e);
    } else {
      PutScalar(head, v.type, v.scalar);
    }
  }
  for (const auto& t : tensors_) {
    head.PutString(t.name);
    head.Put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) head.Put<uint64_t>(d);
    head.Put<uint32_t>(static_cast<uint32_t>(t.type));
    head.Put<uint64_t>(t.offset);
  }
  head.out.resize(AlignUp(head.out.size(), kAlignment), '\0');

  const std::string tmp = path + ".tmp";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!f) return Status::IOError("gguf: cannot create " + tmp + ": " + std::strerror(errno));
  auto write = [&](const void* p, size_t n) { return std::fwrite(p, 1, n, f.get()) == n; };
  bool ok = write(head.out.data(), head.out.size());
  uint64_t at = 0;
  static constexpr char kZeros[kAlignment] = {};
  for (size_t i = 0; ok && i < tensors_.size(); ++i) {
    ok = write(kZeros, tensors_[i].offset - at) && write(data_[i].data(), data_[i].size());
    at = tensors_[i].offset + data_[i].size();
  }
  ok = ok && std::fflush(f.get()) == 0;
  FILE* raw = f.release();
  ok = std::fclose(raw) == 0 && ok;
  if (!ok) {
    const int err = errno;
    std::filesystem::remove(tmp);
    return err == ENOSPC ? Status::ResourceExhausted("gguf: disk full writing " + path)
                         : Status::IOError("gguf: writing " + tmp + ": " + std::strerror(err));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("gguf: renaming " + tmp + " to " + path + ": " + ec.message());
  return Status::Ok();
}

StatusOr<File> File::Open(const std::string& path) {
  File file;
  KVMART_ASSIGN_OR_RETURN(file.map_, MappedFile::Open(path));
  Source src(file.map_.data(), file.map_.size());
  auto ctx = [&](const Status& st) { return st.WithContext(path + ": "); };
  uint32_t magic = 0;
  uint64_t n_tensors = 0, n_values = 0;
  if (Status st = src.Get(&magic, "magic"); !st.ok()) return ctx(st);
  if (magic != kMagic) return Status::Corruption(path + ": not a GGUF file (bad magic)");
  if (Status st = src.Get(&file.version_, "version"); !st.ok()) return ctx(st);
  if (file.version_ != kVersion) {
    return Status::Unimplemented(path + ": GGUF version " + std::to_string(file.version_) + " (only 3 is read)");
  }
  if (Status st = src.Get(&n_tensors, "tensor count"); !st.ok()) return ctx(st);
  if (Status st = src.Get(&n_values, "metadata count"); !st.ok()) return ctx(st);
  // Each entry takes at least 12 bytes (a key or name length and a type).
  if (n_values > src.left() / 12 || n_tensors > src.left() / 12) {
    return Status::Corruption(path + ": declared counts exceed the file size");
  }
  uint32_t alignment = Writer::kAlignment;
  for (uint64_t i = 0; i < n_values; ++i) {
    std::string key;
    uint32_t type = 0;
    if (Status st = src.GetString(&key, "metadata key"); !st.ok()) return ctx(st);
    if (Status st = src.Get(&type, "metadata type"); !st.ok()) return ctx(st);
    if (!KnownValueType(type)) return Status::Corruption(path + ": " + key + ": unknown value type " + std::to_string(type));
    Value v;
    v.type = static_cast<ValueType>(type);
    if (v.type == ValueType::kArray) {
      uint32_t et = 0;
      uint64_t n = 0;
      if (Status st = src.Get(&et, "array type"); !st.ok()) return ctx(st);
      if (Status st = src.Get(&n, "array length"); !st.ok()) return ctx(st);
      if (!KnownValueType(et) || et == static_cast<uint32_t>(ValueType::kArray)) {
        return Status::Corruption(path + ": " + key + ": array element type " + std::to_string(et));
      }
      v.element_type = static_cast<ValueType>(et);
      if (n > src.left() / MinSize(v.element_type)) {
        return Status::Corruption(path + ": " + key + ": array of " + std::to_string(n) + " exceeds the file");
      }
      v.array.resize(n);
      for (auto& e : v.array) {
        if (Status st = GetScalar(src, v.element_type, &e); !st.ok()) return ctx(st.WithContext(key + ": "));
      }
    } else if (Status st = GetScalar(src, v.type, &v.scalar); !st.ok()) {
      return ctx(st.WithContext(key + ": "));
    }
    if (key == "general.alignment" && v.type == ValueType::kUint32) {
      alignment = static_cast<uint32_t>(std::get<uint64_t>(v.scalar));
      if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        return Status::Corruption(path + ": general.alignment " + std::to_string(alignment) + " is not a power of two");
      }
    }
    if (!file.values_.emplace(key, std::move(v)).second) return Status::Corruption(path + ": duplicate key " + key);
  }
  file.tensors_.resize(n_tensors);
  for (auto& t : file.tensors_) {
    uint32_t n_dims = 0, type = 0;
    if (Status st = src.GetString(&t.name, "tensor name"); !st.ok()) return ctx(st);
    if (Status st = src.Get(&n_dims, "tensor rank"); !st.ok()) return ctx(st);
    if (n_dims == 0 || n_dims > 4) return Status::Corruption(path + ": tensor " + t.name + " has rank " + std::to_string(n_dims));
    t.dims.resize(n_dims);
    uint64_t elements = 1;
    for (auto& d : t.dims) {
      if (Status st = src.Get(&d, "tensor dim"); !st.ok()) return ctx(st);
      // Bounded by the file size at every step, so nbytes() cannot overflow.
      if (d == 0 || d > file.map_.size() || elements > file.map_.size() / d) {
        return Status::Corruption(path + ": tensor " + t.name + " has a bad or oversized dimension");
      }
      elements *= d;
    }
    if (Status st = src.Get(&type, "tensor type"); !st.ok()) return ctx(st);
    if (type != 0 && type != 1 && type != 30) {
      return Status::Unimplemented(path + ": tensor " + t.name + " has ggml type " + std::to_string(type) +
                                   " (kvmart reads F32, F16, BF16)");
    }
    t.type = static_cast<TensorType>(type);
    if (Status st = src.Get(&t.offset, "tensor offset"); !st.ok()) return ctx(st);
  }
  file.data_offset_ = AlignUp(src.pos(), alignment);
  const uint64_t size = file.map_.size();
  for (const auto& t : file.tensors_) {
    if (t.offset % alignment != 0 || file.data_offset_ > size || t.offset > size - file.data_offset_ ||
        t.nbytes() > size - file.data_offset_ - t.offset) {
      return Status::Corruption(path + ": tensor " + t.name + " lies outside the file or is misaligned");
    }
  }
  return file;
}

const Value* File::Find(std::string_view key) const {
  auto it = values_.find(std::string(key));
  return it == values_.end() ? nullptr : &it->second;
}

const TensorInfo* File::FindTensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string_view File::TensorBytes(const TensorInfo& t) const {
  return std::string_view(reinterpret_cast<const char*>(map_.data() + data_offset_ + t.offset), t.nbytes());
}

}  // namespace kvmart::gguf
