#include "market/keys.h"

#include <sodium.h>

#include <array>
#include <cstdlib>
#include <vector>

namespace kvmart::market {

namespace {
constexpr std::string_view kPrefix = "kvm_";

void EnsureSodium() {
  // sodium_init is thread-safe and idempotent; it only fails if no entropy source.
  if (sodium_init() < 0) std::abort();
}

struct ScopeName {
  uint32_t bit;
  std::string_view name;
};
constexpr std::array<ScopeName, 3> kScopeNames = {{{kScopePublish, "publish"}, {kScopeBuy, "buy"}, {kScopeAdmin, "admin"}}};
}  // namespace

StatusOr<uint32_t> ParseScopes(std::string_view csv) {
  uint32_t out = 0;
  while (!csv.empty()) {
    size_t comma = csv.find(',');
    std::string_view item = csv.substr(0, comma);
    csv = comma == std::string_view::npos ? std::string_view() : csv.substr(comma + 1);
    if (item.empty()) continue;
    bool found = false;
    for (const auto& s : kScopeNames) {
      if (s.name == item) {
        out |= s.bit;
        found = true;
      }
    }
    if (!found) return Status::InvalidArgument("unknown scope '" + std::string(item) + "' (publish, buy, admin)");
  }
  if (out == 0) return Status::InvalidArgument("at least one scope is required (publish, buy, admin)");
  return out;
}

std::string ScopesToString(uint32_t scopes) {
  std::string out;
  for (const auto& s : kScopeNames) {
    if (scopes & s.bit) {
      if (!out.empty()) out += ',';
      out += s.name;
    }
  }
  return out;
}

NewApiKey GenerateApiKey() {
  EnsureSodium();
  std::array<uint8_t, 32> raw;
  randombytes_buf(raw.data(), raw.size());
  NewApiKey k;
  k.secret = std::string(kPrefix) + ToHex(raw.data(), raw.size());
  k.hash = Sha256Of(raw.data(), raw.size());
  sodium_memzero(raw.data(), raw.size());
  return k;
}

StatusOr<Digest256> HashApiKey(std::string_view secret) {
  if (secret.size() != kPrefix.size() + 64 || secret.substr(0, kPrefix.size()) != kPrefix) {
    return Status::Unauthenticated("invalid API key");
  }
  std::string raw;
  if (!FromHex(secret.substr(kPrefix.size()), &raw) || raw.size() != 32) return Status::Unauthenticated("invalid API key");
  Digest256 d = Sha256Of(raw.data(), raw.size());
  sodium_memzero(raw.data(), raw.size());
  return d;
}

bool DigestEquals(const Digest256& a, const Digest256& b) { return sodium_memcmp(a.data(), b.data(), a.size()) == 0; }

}  // namespace kvmart::market
