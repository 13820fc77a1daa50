#include "model/synth.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/sha256.h"
#include "kernels/bf16.h"

namespace kvmart {
namespace {

namespace fs = std::filesystem;

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;
  float center;   // values are center + uniform(-halfwidth, halfwidth)
  float halfwidth;
  uint64_t numel() const {
    uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::vector<TensorSpec> Specs(const ModelConfig& c) {
  const uint64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  const float sqrt3 = std::sqrt(3.0f);
  // Uniform with std s has half-width s·√3. Input projections: std 1/√fan_in
  // keeps outputs O(1) from normalised inputs. Output projections (o, down)
  // write into the residual stream: std 1/√(fan_in · 2L) so the stream's
  // variance grows to O(1) after L layers instead of O(L).
  auto in_proj = [&](uint64_t fan_in) { return sqrt3 / std::sqrt(float(fan_in)); };
  auto out_proj = [&](uint64_t fan_in) {
    return sqrt3 / std::sqrt(float(fan_in) * 2.0f * float(c.num_hidden_layers));
  };
  std::vector<TensorSpec> s;
  s.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, 0.0f, 0.05f * sqrt3});
  for (uint32_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    s.push_back({p + "input_layernorm.weight", {h}, 1.0f, 0.1f});
    s.push_back({p + "self_attn.q_proj.weight", {q, h}, 0.0f, in_proj(h)});
    s.push_back({p + "self_attn.k_proj.weight", {kv, h}, 0.0f, in_proj(h)});
    s.push_back({p + "self_attn.v_proj.weight", {kv, h}, 0.0f, in_proj(h)});
    s.push_back({p + "self_attn.o_proj.weight", {h, q}, 0.0f, out_proj(q)});
    s.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, 1.0f, 0.1f});
    s.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, 1.0f, 0.1f});
    s.push_back({p + "post_attention_layernorm.weight", {h}, 1.0f, 0.1f});
    s.push_back({p + "mlp.gate_proj.weight", {inter, h}, 0.0f, in_proj(h)});
    s.push_back({p + "mlp.up_proj.weight", {inter, h}, 0.0f, in_proj(h)});
    s.push_back({p + "mlp.down_proj.weight", {h, inter}, 0.0f, out_proj(inter)});
  }
  s.push_back({"model.norm.weight", {h}, 1.0f, 0.1f});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {c.vocab_size, h}, 0.0f, 0.05f * sqrt3});
  std::sort(s.begin(), s.end(), [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
  return s;
}

// Values of one tensor chunk: a pure function of (seed, tensor name, chunk
// index), so the output does not depend on the thread count.
constexpr uint64_t kChunkElems = 1 << 20;

void FillChunk(const TensorSpec& t, uint64_t tensor_seed, uint64_t chunk, const std::string& dtype,
               uint8_t* out, uint64_t n) {
  uint64_t state = SplitMix(tensor_seed ^ SplitMix(chunk + 1));
  for (uint64_t i = 0; i < n; ++i) {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // [-1, 1)
    const float v = t.center + t.halfwidth * u;
    if (dtype == "f32") {
      std::memcpy(out + 4 * i, &v, 4);
    } else {
      uint16_t b;
      if (dtype == "bf16") {
        b = F32ToBf16(v);
      } else {  // f16
        b = F32ToF16(v);
      }
      std::memcpy(out + 2 * i, &b, 2);
    }
  }
}

Status WriteAll(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(path + ": write: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

Status CopyFile(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return Status::IOError("copy " + from.string() + " -> " + to.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

Status WriteSyntheticCheckpoint(const SynthOptions& o) {
  KVMART_ASSIGN_OR_RETURN(ModelConfig c, ShapeByName(o.shape));
  if (o.dtype != "bf16" && o.dtype != "f16" && o.dtype != "f32") {
    return Status::InvalidArgument("--dtype must be bf16, f16 or f32");
  }
  if (o.out_dir.empty()) return Status::InvalidArgument("an output directory is required");
  c.torch_dtype = o.dtype == "bf16" ? "bfloat16" : o.dtype == "f16" ? "float16" : "float32";
  const uint64_t esize = o.dtype == "f32" ? 4 : 2;
  const std::string st_dtype = o.dtype == "bf16" ? "BF16" : o.dtype == "f16" ? "F16" : "F32";
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return Status::IOError(o.out_dir + ": " + ec.message());

  // Assign tensors (in name order) to shards.
  auto specs = Specs(c);
  uint64_t total = 0;
  for (auto& t : specs) total += t.numel() * esize;
  const uint64_t limit = o.max_shard_bytes ? o.max_shard_bytes : (4ull << 30);
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const uint64_t b = specs[i].numel() * esize;
    if (cur > 0 && cur + b > limit) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += b;
  }
  // Remove files of an earlier, differently sharded synthesis.
  for (const auto& entry : fs::directory_iterator(o.out_dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.rfind("model", 0) == 0 && (n.ends_with(".safetensors") || n.ends_with(".index.json"))) fs::remove(entry.path(), ec);
  }
  fs::remove(fs::path(o.out_dir) / ".kvmart-digest.json", ec);

  const size_t threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t done = 0;
  std::vector<uint8_t> buf;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = shards.size() == 1 ? "model.safetensors"
                                                : "model-" + std::string(5 - std::to_string(s + 1).size(), '0') +
                                                      std::to_string(s + 1) + "-of-" +
                                                      std::string(5 - std::to_string(shards.size()).size(), '0') +
                                                      std::to_string(shards.size()) + ".safetensors";
    nlohmann::json header = nlohmann::json::object();
    header["__metadata__"] = {{"format", "pt"}};
    uint64_t off = 0;
    for (size_t i : shards[s]) {
      const uint64_t b = specs[i].numel() * esize;
      header[specs[i].name] = {{"dtype", st_dtype}, {"shape", specs[i].shape}, {"data_offsets", {off, off + b}}};
      off += b;
      weight_map[specs[i].name] = file;
    }
    std::string hs = header.dump();
    while ((8 + hs.size()) % 8 != 0) hs.push_back(' ');  // align data as the reference writer does
    const std::string path = (fs::path(o.out_dir) / file).string();
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IOError(tmp + ": " + std::strerror(errno));
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{hs.size()} >> (8 * i));
    Status st = WriteAll(fd, len, 8, tmp);
    if (st.ok()) st = WriteAll(fd, hs.data(), hs.size(), tmp);
    for (size_t i : shards[s]) {
      if (!st.ok()) break;
      const TensorSpec& t = specs[i];
      // Seeded by the tensor's name through SHA-256 so files are identical on any platform.
      const Digest256 name_digest = Sha256Of(t.name);
      uint64_t name_bits = 0;
      for (int b = 0; b < 8; ++b) name_bits = name_bits << 8 | name_digest[b];
      const uint64_t tensor_seed = SplitMix(o.seed ^ SplitMix(name_bits));
      const uint64_t n = t.numel();
      const uint64_t chunks = (n + kChunkElems - 1) / kChunkElems;
      // Generate up to 64 chunks at a time in parallel, then write them in order.
      for (uint64_t c0 = 0; c0 < chunks && st.ok(); c0 += 64) {
        const uint64_t c1 = std::min(chunks, c0 + 64);
        const uint64_t e0 = c0 * kChunkElems, e1 = std::min(n, c1 * kChunkElems);
        buf.resize((e1 - e0) * esize);
        std::vector<std::thread> ws;
        for (size_t w = 0; w < threads; ++w) {
          ws.emplace_back([&, w] {
            for (uint64_t ch = c0 + w; ch < c1; ch += threads) {
              const uint64_t b = ch * kChunkElems, e = std::min(n, b + kChunkElems);
              FillChunk(t, tensor_seed, ch, o.dtype, buf.data() + (b - e0) * esize, e - b);
            }
          });
        }
        for (auto& w : ws) w.join();
        st = WriteAll(fd, buf.data(), buf.size(), tmp);
        done += buf.size();
        if (o.progress) o.progress(done, total);
      }
    }
    if (st.ok() && ::fsync(fd) != 0) st = Status::IOError(tmp + ": fsync: " + std::strerror(errno));
    ::close(fd);
    if (st.ok()) {
      fs::rename(tmp, path, ec);
      if (ec) st = Status::IOError(path + ": " + ec.message());
    }
    if (!st.ok()) {
      fs::remove(tmp, ec);
      return st;
    }
  }
  if (shards.size() > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::ofstream(fs::path(o.out_dir) / "model.safetensors.index.json") << index.dump(2) << "\n";
  }
  {
    std::ofstream cfg(fs::path(o.out_dir) / "config.json");
    cfg << c.ToHfJson();
    if (!cfg) return Status::IOError(o.out_dir + "/config.json: write failed");
  }
  if (!o.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path from = fs::path(o.tokenizer_dir) / f;
      if (!fs::exists(from, ec)) return Status::NotFound(from.string() + " (run `make setup`)");
      KVMART_RETURN_IF_ERROR(CopyFile(from, fs::path(o.out_dir) / f));
    }
  }
  return Status::Ok();
}

}  // namespace kvmart
