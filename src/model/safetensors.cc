#include "model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace kvmart {
namespace {

using nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

uint64_t DtypeSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "BF16" || dtype == "F16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

std::string ShapeString(const std::vector<uint64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

uint64_t TensorView::numel() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

StatusOr<WeightDtype> TensorView::weight_dtype() const {
  if (dtype == "BF16") return WeightDtype::kBf16;
  if (dtype == "F16") return WeightDtype::kF16;
  if (dtype == "F32") return WeightDtype::kF32;
  return Status::Unimplemented(file + ": tensor " + name + ": dtype " + dtype + " is not supported (BF16, F16, F32)");
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
  ck->dir_ = dir;
  std::error_code ec;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  std::vector<std::string> files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index, ec)) {
    std::ifstream in(index);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return Status::Corruption(index.string() + ": not a valid safetensors index (no weight_map object)");
    }
    std::set<std::string> unique;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) return Status::Corruption(index.string() + ": weight_map[" + name + "] is not a string");
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f == ".." || f.empty()) {
        return Status::Corruption(index.string() + ": weight_map[" + name + "] names a file outside the directory");
      }
      unique.insert(f);
      weight_map[name] = f;
    }
    files.assign(unique.begin(), unique.end());
  } else if (fs::exists(single, ec)) {
    files.push_back("model.safetensors");
  } else {
    return Status::NotFound(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& f : files) KVMART_RETURN_IF_ERROR(ck->AddFile(f));
  for (const auto& [name, file] : weight_map) {
    auto it = ck->tensors_.find(name);
    if (it == ck->tensors_.end()) {
      return Status::Corruption(index.string() + ": tensor " + name + " is listed in " + file + " but missing there");
    }
    if (it->second.file != file) {
      return Status::Corruption(index.string() + ": tensor " + name + " is listed in " + file + " but found in " +
                                it->second.file);
    }
  }
  return ck;
}

Status Checkpoint::AddFile(const std::string& file_name) {
  const std::string path = (std::filesystem::path(dir_) / file_name).string();
  KVMART_ASSIGN_OR_RETURN(MappedFile map, MappedFile::Open(path));
  const uint64_t size = map.size();
  if (size < 8) return Status::Corruption(path + ": truncated (" + std::to_string(size) + " bytes, no header)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | map.data()[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Status::Corruption(path + ": header length " + std::to_string(header_len) + " exceeds the file (" +
                              std::to_string(size) + " bytes): truncated or not a safetensors file");
  }
  const char* hp = reinterpret_cast<const char*>(map.data() + 8);
  json header = json::parse(hp, hp + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return Status::Corruption(path + ": header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (auto& item : header.items()) {
    // Named, not a structured binding: clang 14 cannot capture those in the lambda below.
    const std::string name = item.key();
    auto& info = item.value();
    if (name == "__metadata__") continue;
    auto fail = [&](const std::string& why) { return Status::Corruption(path + ": tensor " + name + ": " + why); };
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets")) {
      return fail("entry needs dtype, shape and data_offsets");
    }
    if (!info["dtype"].is_string() || !info["shape"].is_array() || !info["data_offsets"].is_array() ||
        info["data_offsets"].size() != 2) {
      return fail("malformed dtype, shape or data_offsets");
    }
    TensorView t;
    t.name = name;
    t.file = file_name;
    t.dtype = info["dtype"].get<std::string>();
    const uint64_t esize = DtypeSize(t.dtype);
    if (esize == 0) return fail("unknown dtype " + t.dtype);
    unsigned __int128 numel = 1;
    for (auto& d : info["shape"]) {
      if (!d.is_number_unsigned()) return fail("shape entries must be non-negative integers");
      t.shape.push_back(d.get<uint64_t>());
      numel *= t.shape.back();
      if (numel > (unsigned __int128)(data_size)) return fail("shape " + ShapeString(t.shape) + " exceeds the file");
    }
    auto& off = info["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) return fail("data_offsets must be integers");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size) {
      return fail("data_offsets [" + std::to_string(b) + "," + std::to_string(e) + "] outside the " +
                  std::to_string(data_size) + " data bytes (truncated file?)");
    }
    if (e - b != static_cast<uint64_t>(numel) * esize) {
      return fail("data_offsets span " + std::to_string(e - b) + " bytes but shape " + ShapeString(t.shape) + " of " +
                  t.dtype + " needs " + std::to_string(static_cast<uint64_t>(numel) * esize));
    }
    t.data = map.data() + data_start + b;
    t.nbytes = e - b;
    if (reinterpret_cast<uintptr_t>(t.data) % esize != 0) return fail("data is not aligned to its element size");
    if (tensors_.count(name)) return fail("appears in more than one file");
    tensors_.emplace(name, std::move(t));
  }
  maps_.push_back(std::move(map));
  return Status::Ok();
}

StatusOr<const TensorView*> Checkpoint::Get(const std::string& name, const std::vector<uint64_t>& shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return Status::NotFound(dir_ + ": missing tensor " + name);
  if (it->second.shape != shape) {
    return Status::InvalidArgument(dir_ + "/" + it->second.file + ": tensor " + name + " has shape " +
                                   ShapeString(it->second.shape) + ", expected " + ShapeString(shape));
  }
  return &it->second;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> r;
  for (const auto& m : maps_) r.push_back(std::filesystem::path(m.path()).filename().string());
  return r;
}

}  // namespace kvmart
