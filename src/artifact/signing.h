// Publisher keys and Ed25519 signatures (libsodium).
//
// Key file (docs/ARTIFACT.md §6), text, mode 0600, three lines:
//   kvmart-ed25519-key-v1
//   public <64 hex>
//   seed <64 hex>
// Only the 32-byte seed is secret; the key pair is re-derived from it on load and
// must match the public line, so a damaged file is caught instead of silently
// signing with a different key.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart::artifact {

using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

class SigningKey {
 public:
  // Fresh random key.
  static StatusOr<SigningKey> Generate();
  // Deterministic key from a 32-byte seed (tests, golden files).
  static StatusOr<SigningKey> FromSeed(std::span<const uint8_t, 32> seed);
  // Reads a key file; refuses files readable by group or others.
  static StatusOr<SigningKey> LoadFile(const std::string& path);
  // Writes a new key file with mode 0600; refuses to overwrite an existing file.
  Status SaveFile(const std::string& path) const;

  SigningKey(SigningKey&&) noexcept = default;
  SigningKey& operator=(SigningKey&&) noexcept = default;
  ~SigningKey();  // wipes the secret

  const PublicKey& public_key() const { return pk_; }
  std::string public_key_hex() const;
  Signature Sign(std::string_view message) const;

 private:
  SigningKey() = default;
  PublicKey pk_{};
  std::array<uint8_t, 64> sk_{};  // libsodium secret key (seed ‖ public)
};

bool VerifySignature(const PublicKey& pk, std::string_view message, const Signature& sig);

// Makes sure libsodium is initialised (idempotent, thread-safe in libsodium).
Status InitCrypto();

}  // namespace kvmart::artifact
