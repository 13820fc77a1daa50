#include "cli/data_dir.h"

#include <cstdlib>
#include <filesystem>

#include "base/secret_file.h"

namespace kvmart::cli {

DataDir ResolveDataDir(const std::string& flag, const char* kvmart_home, const char* home) {
  if (!flag.empty()) return {flag};
  if (kvmart_home != nullptr && *kvmart_home != '\0') return {kvmart_home};
  const std::filesystem::path base(home != nullptr && *home != '\0' ? home : ".");
  return {(base / ".local/share/kvmart").string()};
}

std::string DataDir::MarketLocation(const std::string& db_flag) const {
  if (!db_flag.empty()) return db_flag;
  const char* env = std::getenv("KVMART_DB");
  if (env != nullptr && *env != '\0') return env;
  return MarketDb();
}

std::string DataDir::SharedBlocksLocation(const std::string& blocks_flag) {
  if (!blocks_flag.empty()) return blocks_flag;
  const char* env = std::getenv("KVMART_BLOCKS");
  return env != nullptr ? env : "";
}

DataDir ResolveDataDir(const std::string& flag) {
  return ResolveDataDir(flag, std::getenv("KVMART_HOME"), std::getenv("HOME"));
}

Status EnsureDataDir(const DataDir& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir.root, ec);
  if (ec) return Status::IOError("mkdir " + dir.root + ": " + ec.message());
  return Status::Ok();
}

namespace {

// A key file holds the hex secret and a newline.
std::string FirstWord(const std::string& text) {
  const size_t b = text.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return text.substr(b, text.find_first_of(" \t\r\n", b) - b);
}

StatusOr<market::ProviderKey> ReadProviderKey(const std::string& path) {
  KVMART_ASSIGN_OR_RETURN(std::string text, ReadSecretFile(path));
  auto key = market::ProviderKey::FromSecretHex(FirstWord(text));
  if (!key.ok()) return key.status().WithContext(path);
  return key;
}

}  // namespace

StatusOr<market::ProviderKey> LoadOrCreateProviderKey(const DataDir& dir, bool create) {
  const std::string path = dir.ProviderKey();
  auto existing = ReadProviderKey(path);
  if (existing.ok() || existing.status().code() != Status::Code::kNotFound) return existing;
  if (!create) {
    return Status::NotFound(path + " does not exist: run `kvmart market init --data " + dir.root + "` first");
  }
  KVMART_RETURN_IF_ERROR(EnsureDataDir(dir));
  market::ProviderKey k = market::ProviderKey::Generate();
  Status st = WriteSecretFile(path, k.SecretHex() + "\n", SecretWrite::kCreateOnly);
  if (st.code() == Status::Code::kAlreadyExists) return ReadProviderKey(path);
  KVMART_RETURN_IF_ERROR(st);
  return k;
}

StatusOr<market::Bootstrap> InitializeMarket(market::Market& m, market::Currency currency, const DataDir& dir) {
  return m.Initialize(currency, [&](const market::Bootstrap& b) {
    // Replace: an admin.key left by a market that was never initialised (or
    // was deleted) names no key; the market's own state decides.
    return WriteSecretFile(dir.AdminKey(), b.admin_key + "\n", SecretWrite::kReplace);
  });
}

}  // namespace kvmart::cli
