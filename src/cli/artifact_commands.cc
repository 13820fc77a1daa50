// `kvmart keygen` and `kvmart inspect` (artifact module). publish / verify / ask
// need the engine and are added next to these by the engine work.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "artifact/container.h"
#include "artifact/integrity.h"
#include "artifact/signing.h"
#include "cli/commands.h"

namespace kvmart::cli {
namespace {

using artifact::ArtifactReader;

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  return 1;
}

int Keygen(const std::string& out) {
  auto key = artifact::SigningKey::Generate();
  if (!key.ok()) return Fail(key.status());
  if (Status s = key->SaveFile(out); !s.ok()) return Fail(s);
  std::cout << "wrote " << out << " (mode 0600)\npublisher " << key->public_key_hex() << "\n";
  return 0;
}

std::string HumanBytes(uint64_t b) {
  char buf[32];
  if (b < 10 * 1024) std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(b));
  else if (b < 10ull * 1024 * 1024) std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof(buf), "%.1f MiB", b / (1024.0 * 1024.0));
  return buf;
}

int Inspect(const std::string& path, bool as_json) {
  artifact::ReaderOptions opts;
  opts.require_signature = false;  // inspect reports the signature instead of refusing
  auto r = ArtifactReader::OpenFile(path, opts);
  if (!r.ok()) return Fail(r.status());
  const artifact::Manifest& m = r->manifest();
  // The cheap per-block checksum; payload SHA-256 needs a decode (`kvmart verify`).
  size_t bad_blocks = 0;
  std::string first_bad;
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    Status s = artifact::VerifyStoredChecksum(m.blocks[i], r->StoredBlock(i));
    if (!s.ok() && bad_blocks++ == 0) first_bad = s.message();
  }
  const uint64_t raw = m.TotalRawBytes(), stored = m.TotalStoredBytes();
  const double ratio = stored ? static_cast<double>(raw) / stored : 0.0;
  const Status& sig = r->signature_status();
  const bool ok = sig.ok() && bad_blocks == 0;
  if (as_json) {
    nlohmann::json j;
    j["file"] = path;
    j["file_bytes"] = r->file_bytes();
    j["manifest"] = nlohmann::json::parse(r->manifest_text());
    j["raw_bytes"] = raw;
    j["stored_bytes"] = stored;
    j["ratio"] = ratio;
    j["signature_valid"] = sig.ok();
    if (!sig.ok()) j["signature_error"] = sig.message();
    j["block_checksums_valid"] = bad_blocks == 0;
    if (bad_blocks) j["block_checksum_error"] = first_bad;
    std::cout << j.dump(2) << "\n";
    return ok ? 0 : 1;
  }
  const auto& p = m.profile;
  std::cout << "artifact   " << m.artifact_id << "\n"
            << "format     " << m.version.major << "." << m.version.minor << " (" << HumanBytes(r->file_bytes())
            << " file)\n";
  if (m.title) std::cout << "title      " << *m.title << "\n";
  std::cout << "created    " << m.created_at << "\n"
            << "publisher  " << ToHex(m.publisher.data(), m.publisher.size()) << "\n"
            << "signature  " << (sig.ok() ? "valid" : "INVALID: " + sig.message()) << "\n"
            << "profile    weights " << p.weights_digest.substr(0, 16) << "…  config " << p.config_digest.substr(0, 16)
            << "…  tokenizer " << p.tokenizer_digest.substr(0, 16) << "…\n"
            << "           " << KvDtypeName(p.shape.dtype) << " KV, " << p.shape.num_layers << " layers x "
            << p.shape.num_kv_heads << " kv heads x " << p.shape.head_dim << " head_dim, numerics " << p.numerics
            << ", block " << p.block_size << " tokens\n"
            << "tokens     " << m.tokens.size() << " in " << m.blocks.size() << " blocks\n"
            << "sizes      raw " << HumanBytes(raw) << ", stored " << HumanBytes(stored);
  char rb[32];
  std::snprintf(rb, sizeof(rb), "%.3fx", ratio);
  std::cout << ", ratio " << rb << "\n"
            << "probe      " << ToHex(m.probe_logits_sha256) << "\n";
  if (m.source_sha256) std::cout << "source     " << ToHex(*m.source_sha256) << "\n";
  std::cout << "checksums  "
            << (bad_blocks == 0 ? "all " + std::to_string(m.blocks.size()) + " blocks ok"
                                : std::to_string(bad_blocks) + " bad blocks (" + first_bad + ")")
            << "\n";
  for (const auto& b : m.blocks) {
    std::snprintf(rb, sizeof(rb), "%.3fx", b.stored_bytes ? static_cast<double>(b.raw_bytes) / b.stored_bytes : 0.0);
    std::cout << "  block " << b.index << "  tokens [" << b.token_begin << ", " << b.token_end << ")  "
              << artifact::CodecName(b.codec) << "  " << HumanBytes(b.raw_bytes) << " -> " << HumanBytes(b.stored_bytes)
              << " (" << rb << ")  chain " << ToHex(b.chain_hash).substr(0, 16) << "…\n";
  }
  return ok ? 0 : 1;
}

}  // namespace

void RegisterArtifactCommands(CLI::App& app, int* exit_code) {
  auto keygen_out = std::make_shared<std::string>();
  CLI::App* keygen = app.add_subcommand("keygen", "Create an Ed25519 publisher key file (mode 0600)");
  keygen->add_option("--out", *keygen_out, "Key file to create (never overwritten)")->required();
  keygen->callback([keygen_out, exit_code] { *exit_code = Keygen(*keygen_out); });

  auto inspect_file = std::make_shared<std::string>();
  auto inspect_json = std::make_shared<bool>(false);
  CLI::App* inspect = app.add_subcommand("inspect", "Show a .kva artifact: manifest, sizes, ratio, signature status");
  inspect->add_option("file", *inspect_file, "Artifact file (.kva)")->required();
  inspect->add_flag("--json", *inspect_json, "Print JSON (the manifest plus computed fields)");
  inspect->callback([inspect_file, inspect_json, exit_code] { *exit_code = Inspect(*inspect_file, *inspect_json); });
}

}  // namespace kvmart::cli
