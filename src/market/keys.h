// API keys: 32 random bytes shown once as "kvm_<64 hex>"; only SHA-256 of the raw
// bytes is stored. A plain (fast) hash is enough because the secret has 256 bits
// of entropy: there is nothing to brute-force, unlike a password.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/sha256.h"
#include "base/status.h"

namespace kvmart::market {

enum Scope : uint32_t {
  kScopePublish = 1u << 0,  // list artifacts, set prices
  kScopeBuy = 1u << 1,      // quote, purchase, load
  kScopeAdmin = 1u << 2,    // accounts, keys, deposits, storage billing
};
constexpr uint32_t kAllScopes = kScopePublish | kScopeBuy | kScopeAdmin;

// "publish,buy" ↔ bitmask.
StatusOr<uint32_t> ParseScopes(std::string_view csv);
std::string ScopesToString(uint32_t scopes);

struct NewApiKey {
  std::string secret;  // "kvm_" + 64 hex; shown to the caller once
  Digest256 hash;      // what is stored
};

// 32 bytes from libsodium's CSPRNG.
NewApiKey GenerateApiKey();

// Parses "kvm_<64 hex>" and returns SHA-256 of the 32 raw bytes. Malformed keys
// are Unauthenticated (the caller cannot tell a bad format from an unknown key).
StatusOr<Digest256> HashApiKey(std::string_view secret);

// Constant-time equality of two digests (libsodium sodium_memcmp).
bool DigestEquals(const Digest256& a, const Digest256& b);

}  // namespace kvmart::market
