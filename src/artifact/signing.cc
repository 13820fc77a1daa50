#include "artifact/signing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/secret_file.h"
#include "base/sha256.h"

namespace kvmart::artifact {
namespace {
constexpr std::string_view kKeyMagic = "kvmart-ed25519-key-v1";
}

Status InitCrypto() {
  if (sodium_init() < 0) return Status::Internal("libsodium initialisation failed");
  return Status::Ok();
}

SigningKey::~SigningKey() { sodium_memzero(sk_.data(), sk_.size()); }

StatusOr<SigningKey> SigningKey::Generate() {
  KVMART_RETURN_IF_ERROR(InitCrypto());
  SigningKey k;
  crypto_sign_keypair(k.pk_.data(), k.sk_.data());
  return k;
}

StatusOr<SigningKey> SigningKey::FromSeed(std::span<const uint8_t, 32> seed) {
  KVMART_RETURN_IF_ERROR(InitCrypto());
  SigningKey k;
  crypto_sign_seed_keypair(k.pk_.data(), k.sk_.data(), seed.data());
  return k;
}

StatusOr<SigningKey> SigningKey::LoadFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::IOError(path + ": " + std::strerror(errno));
  if ((st.st_mode & 077) != 0)
    return Status::PermissionDenied(path + ": key file is accessible by group or others (chmod 600 it)");
  if (st.st_size > 4096) return Status::Corruption(path + ": not a kvmart key file (too large)");
  std::ifstream in(path);
  if (!in) return Status::IOError(path + ": cannot open");
  std::string magic, pk_tag, pk_hex, seed_tag, seed_hex;
  std::getline(in, magic);
  in >> pk_tag >> pk_hex >> seed_tag >> seed_hex;
  if (magic != kKeyMagic || pk_tag != "public" || seed_tag != "seed")
    return Status::Corruption(path + ": not a kvmart key file");
  std::string seed, pk;
  if (!FromHex(seed_hex, &seed) || seed.size() != 32) return Status::Corruption(path + ": bad seed");
  if (!FromHex(pk_hex, &pk) || pk.size() != 32) return Status::Corruption(path + ": bad public key");
  std::array<uint8_t, 32> s;
  std::memcpy(s.data(), seed.data(), 32);
  sodium_memzero(seed.data(), seed.size());
  sodium_memzero(seed_hex.data(), seed_hex.size());
  KVMART_ASSIGN_OR_RETURN(SigningKey k, FromSeed(s));
  sodium_memzero(s.data(), s.size());
  if (std::memcmp(k.pk_.data(), pk.data(), 32) != 0)
    return Status::Corruption(path + ": public key does not match the seed");
  return k;
}

Status SigningKey::SaveFile(const std::string& path) const {
  std::string text = std::string(kKeyMagic) + "\npublic " + public_key_hex() + "\nseed " + ToHex(sk_.data(), 32) + "\n";
  Status result = WriteSecretFile(path, text, SecretWrite::kCreateOnly);
  sodium_memzero(text.data(), text.size());
  return result;
}

std::string SigningKey::public_key_hex() const { return ToHex(pk_.data(), pk_.size()); }

Signature SigningKey::Sign(std::string_view message) const {
  Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       sk_.data());
  return sig;
}

bool VerifySignature(const PublicKey& pk, std::string_view message, const Signature& sig) {
  if (sodium_init() < 0) return false;
  return crypto_sign_verify_detached(sig.data(), reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), pk.data()) == 0;
}

}  // namespace kvmart::artifact
