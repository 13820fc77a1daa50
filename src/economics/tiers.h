// Where `bench reuse` loads an artifact from: the provider's memory tier
// (verified, decoded payloads in RAM, imported with ImportBlockPayload) and its
// disk tier (stored bytes read from disk, checked, decoded, imported), for the
// raw and the lossless codec.
//
// Two sources, chosen by OpenTiers:
//  - "store": the real store (src/store, when this build has it): Store::Put on
//    publish, a warm memory tier for memory runs, DropMemoryTier before disk
//    runs, Store::Load with a consumer calling ImportBlockPayload. Raw and
//    lossless artifacts of one document have the same id (the id depends on
//    profile and tokens only), so each codec gets its own store.
//  - "file": the memory tier is the decoded payloads held here; the disk tier is
//    the `.kva` file read with a warm page cache (ArtifactReader::OpenFile +
//    ReadBlock: XXH3-128, decode, payload SHA-256).
// Description() says which one a report measured.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "artifact/container.h"
#include "base/status.h"
#include "engine/engine.h"

namespace kvmart::economics {

enum class TierKind { kMemory = 0, kDiskRaw = 1, kDiskLossless = 2 };
const char* TierKindName(TierKind k);

class Tiers {
 public:
  virtual ~Tiers() = default;
  virtual std::string Description() const = 0;
  // Stores the raw and lossless artifacts of one document (replacing the last).
  virtual Status Publish(const artifact::Artifact& raw, const artifact::Artifact& lossless, uint64_t* raw_file_bytes,
                         uint64_t* lossless_file_bytes) = 0;
  // Untimed: puts the tier in the state a load finds in service (memory tier
  // filled; disk bytes in the page cache and the memory tier dropped).
  virtual Status Prepare(TierKind kind) = 0;
  // Timed: imports the whole artifact into an empty session.
  virtual Status Load(TierKind kind, Session& session) = 0;
  // Drops the current document's artifacts.
  virtual void Forget() = 0;
};

// source: "store" (the store's memory and disk tiers; "auto" is the same) or
// "file" (artifact files read and decoded, without the store).
StatusOr<std::unique_ptr<Tiers>> OpenTiers(const std::string& source, const std::string& work_dir);

// Internal: the two implementations.
StatusOr<std::unique_ptr<Tiers>> OpenFileTiers(const std::string& work_dir);
StatusOr<std::unique_ptr<Tiers>> OpenStoreTiers(const std::string& work_dir);

}  // namespace kvmart::economics
