// SHA-256 (OpenSSL EVP, which uses the SHA extensions where the CPU has them).
// Used for weights digests, content addresses and payload integrity.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace kvmart {

using Digest256 = std::array<uint8_t, 32>;

// Incremental hasher. Not copyable; cheap to create.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  Digest256 Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Digest256 Sha256Of(const void* data, size_t size);
inline Digest256 Sha256Of(std::string_view s) { return Sha256Of(s.data(), s.size()); }

// Lower-case hex of arbitrary bytes.
std::string ToHex(const void* data, size_t size);
inline std::string ToHex(const Digest256& d) { return ToHex(d.data(), d.size()); }
// Parses lower- or upper-case hex; false on odd length or a non-hex digit.
bool FromHex(std::string_view hex, std::string* out);

}  // namespace kvmart
