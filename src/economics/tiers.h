// Where `bench reuse` loads an artifact from: the provider's memory tier
// (verified, decoded payloads in RAM, imported with ImportBlockPayload) and its
// disk tier (stored bytes read from disk, checked, decoded, imported), for the
// raw and the lossless codec.
//
// Until the store (src/store) is available in this build, the disk tier is the
// artifact's `.kva` file read with a warm page cache (ArtifactReader::OpenFile +
// ReadBlock: XXH3-128, decode, payload SHA-256) and the memory tier is the
// decoded payloads held here. Description() says which one a report measured.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "artifact/container.h"
#include "base/status.h"
#include "engine/engine.h"

namespace kvmart::economics {

enum class TierKind { kMemory = 0, kDiskRaw = 1, kDiskLossless = 2 };
const char* TierKindName(TierKind k);

class Tiers {
 public:
  static StatusOr<std::unique_ptr<Tiers>> Open(const std::string& work_dir);
  explicit Tiers(std::string work_dir) : dir_(std::move(work_dir)) {}
  ~Tiers();
  Tiers(const Tiers&) = delete;
  Tiers& operator=(const Tiers&) = delete;

  std::string Description() const;
  // Stores the raw and lossless artifacts of one document (replacing the last).
  Status Publish(const artifact::Artifact& raw, const artifact::Artifact& lossless, uint64_t* raw_file_bytes,
                 uint64_t* lossless_file_bytes);
  // Untimed: puts the tier in the state a load finds in service (memory tier
  // filled; disk files in the page cache, memory tier dropped).
  Status Prepare(TierKind kind);
  // Timed: imports the whole artifact into an empty session.
  Status Load(TierKind kind, Session& session);
  void Reset() {}
  // Drops the current document's artifacts.
  void Forget();

 private:
  std::string dir_;
  std::string raw_path_, lossless_path_;
  artifact::Manifest manifest_;
  std::vector<std::vector<uint8_t>> memory_;  // decoded payloads of the raw artifact
};

}  // namespace kvmart::economics
