#include "reference_forward.h"

#include <cmath>
#include <cstring>

#include "kernels/bf16.h"

namespace kvmart::testing {
namespace {

struct Tensor {
  const TensorView* t;
  double at(uint64_t i) const {
    if (t->dtype == "F32") {
      float f;
      std::memcpy(&f, t->data + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, t->data + 2 * i, 2);
    return t->dtype == "BF16" ? Bf16ToF32(h) : F16ToF32(h);
  }
};

Tensor T(const Checkpoint& ck, const std::string& name) { return {&ck.tensors().at(name)}; }

std::vector<double> Linear(const Tensor& w, const std::vector<double>& x, size_t out, size_t in) {
  std::vector<double> y(out, 0.0);
  for (size_t o = 0; o < out; ++o) {
    double acc = 0;
    for (size_t i = 0; i < in; ++i) acc += w.at(o * in + i) * x[i];
    y[o] = acc;
  }
  return y;
}

void Norm(std::vector<double>& x, size_t off, size_t n, const Tensor& w, double eps) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double r = 1.0 / std::sqrt(ss / n + eps);
  for (size_t i = 0; i < n; ++i) x[off + i] = w.at(i) * (x[off + i] * r);
}

double RoundBf16(double v) { return Bf16ToF32(F32ToBf16(static_cast<float>(v))); }

}  // namespace

std::vector<double> ReferenceLogits(const Checkpoint& ck, const ModelConfig& c, const std::vector<int32_t>& tokens) {
  const size_t H = c.hidden_size, hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const size_t I = c.intermediate_size, n = tokens.size();
  const Tensor embed = T(ck, "model.embed_tokens.weight");
  std::vector<std::vector<double>> x(n, std::vector<double>(H));
  for (size_t t = 0; t < n; ++t) {
    for (size_t i = 0; i < H; ++i) x[t][i] = embed.at(uint64_t(tokens[t]) * H + i);
  }
  for (size_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (size_t t = 0; t < n; ++t) {
      std::vector<double> xn = x[t];
      Norm(xn, 0, H, T(ck, p + "input_layernorm.weight"), c.rms_norm_eps);
      q[t] = Linear(T(ck, p + "self_attn.q_proj.weight"), xn, nh * hd, H);
      k[t] = Linear(T(ck, p + "self_attn.k_proj.weight"), xn, nkv * hd, H);
      v[t] = Linear(T(ck, p + "self_attn.v_proj.weight"), xn, nkv * hd, H);
      for (size_t h = 0; h < nh; ++h) Norm(q[t], h * hd, hd, T(ck, p + "self_attn.q_norm.weight"), c.rms_norm_eps);
      for (size_t h = 0; h < nkv; ++h) Norm(k[t], h * hd, hd, T(ck, p + "self_attn.k_norm.weight"), c.rms_norm_eps);
      auto rope = [&](std::vector<double>& vec, size_t heads) {
        for (size_t h = 0; h < heads; ++h) {
          for (size_t i = 0; i < hd / 2; ++i) {
            const double ang = double(t) * std::pow(c.rope_theta, -2.0 * i / hd);
            const double a = vec[h * hd + i], b = vec[h * hd + i + hd / 2];
            vec[h * hd + i] = a * std::cos(ang) - b * std::sin(ang);
            vec[h * hd + i + hd / 2] = b * std::cos(ang) + a * std::sin(ang);
          }
        }
      };
      rope(q[t], nh);
      rope(k[t], nkv);
      for (auto& e : k[t]) e = RoundBf16(e);
      for (auto& e : v[t]) e = RoundBf16(e);
    }
    for (size_t t = 0; t < n; ++t) {
      std::vector<double> attn(nh * hd, 0.0);
      for (size_t h = 0; h < nh; ++h) {
        const size_t g = h / (nh / nkv);
        std::vector<double> s(t + 1);
        double mx = -1e300, sum = 0;
        for (size_t j = 0; j <= t; ++j) {
          double acc = 0;
          for (size_t d = 0; d < hd; ++d) acc += q[t][h * hd + d] * k[j][g * hd + d];
          s[j] = acc / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j <= t; ++j) {
          for (size_t d = 0; d < hd; ++d) attn[h * hd + d] += s[j] / sum * v[j][g * hd + d];
        }
      }
      auto o = Linear(T(ck, p + "self_attn.o_proj.weight"), attn, H, nh * hd);
      for (size_t i = 0; i < H; ++i) x[t][i] += o[i];
      std::vector<double> xn = x[t];
      Norm(xn, 0, H, T(ck, p + "post_attention_layernorm.weight"), c.rms_norm_eps);
      auto gate = Linear(T(ck, p + "mlp.gate_proj.weight"), xn, I, H);
      auto up = Linear(T(ck, p + "mlp.up_proj.weight"), xn, I, H);
      for (size_t i = 0; i < I; ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      auto down = Linear(T(ck, p + "mlp.down_proj.weight"), gate, H, I);
      for (size_t i = 0; i < H; ++i) x[t][i] += down[i];
    }
  }
  std::vector<double> last = x[n - 1];
  Norm(last, 0, H, T(ck, "model.norm.weight"), c.rms_norm_eps);
  const std::string head = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return Linear(T(ck, head), last, c.vocab_size, H);
}

}  // namespace kvmart::testing
