// The tiers of the store (src/store): its memory tier and its disk tier.
#include <filesystem>

#include "economics/tiers.h"
#include "engine/artifact_io.h"
#include "store/store.h"

namespace kvmart::economics {
namespace {
namespace fs = std::filesystem;

class StoreTiers final : public Tiers {
 public:
  explicit StoreTiers(std::string dir) : dir_(std::move(dir)) {}
  ~StoreTiers() override { Forget(); }
  StoreTiers(const StoreTiers&) = delete;
  StoreTiers& operator=(const StoreTiers&) = delete;

  std::string Description() const override {
    return "store (src/store): memory = the store's memory tier (LRU of verified decoded payloads), "
           "disk = the store's disk tier after DropMemoryTier (block files, warm page cache, XXH3-128 + "
           "decode + SHA-256 per block); Store::Load with a consumer calling ImportBlockPayload; raw and "
           "lossless in separate stores (same artifact id)";
  }

  Status Publish(const artifact::Artifact& raw, const artifact::Artifact& lossless, uint64_t* raw_bytes,
                 uint64_t* lossless_bytes) override {
    Forget();
    KVMART_ASSIGN_OR_RETURN(raw_, OpenOne("store-raw"));
    KVMART_ASSIGN_OR_RETURN(lossless_, OpenOne("store-lossless"));
    KVMART_RETURN_IF_ERROR(raw_->Put(raw));
    KVMART_RETURN_IF_ERROR(lossless_->Put(lossless));
    manifest_ = raw.manifest;
    *raw_bytes = raw_->Metrics().disk_bytes;
    *lossless_bytes = lossless_->Metrics().disk_bytes;
    return Status::Ok();
  }

  Status Prepare(TierKind kind) override {
    if (!raw_) return Status::FailedPrecondition("nothing published");
    store::Store& s = kind == TierKind::kDiskLossless ? *lossless_ : *raw_;
    // One untimed load fills the memory tier (a disk hit promotes) and the page cache.
    KVMART_RETURN_IF_ERROR(s.Load(manifest_.artifact_id, {}, [](const store::LoadedBlock&) { return Status::Ok(); }));
    if (kind != TierKind::kMemory) s.DropMemoryTier();
    return Status::Ok();
  }

  Status Load(TierKind kind, Session& session) override {
    store::Store& s = kind == TierKind::kDiskLossless ? *lossless_ : *raw_;
    const store::Tier want = kind == TierKind::kMemory ? store::Tier::kMemory : store::Tier::kDisk;
    bool wrong_tier = false;
    KVMART_RETURN_IF_ERROR(s.Load(manifest_.artifact_id, {}, [&](const store::LoadedBlock& b) {
      if (b.tier != want) wrong_tier = true;
      std::span<const uint32_t> toks(manifest_.tokens.data() + b.token_begin, b.token_end - b.token_begin);
      return ImportBlockPayload(session, b.token_begin, toks, *b.payload);
    }));
    if (wrong_tier) {
      return Status::Internal(std::string("a block of the ") + TierKindName(kind) +
                              " run came from another tier; the measurement would be wrong");
    }
    return Status::Ok();
  }

  void Forget() override {
    raw_.reset();
    lossless_.reset();
    std::error_code ec;
    fs::remove_all(fs::path(dir_) / "store-raw", ec);
    fs::remove_all(fs::path(dir_) / "store-lossless", ec);
  }

 private:
  StatusOr<std::unique_ptr<store::Store>> OpenOne(const std::string& name) {
    store::StoreOptions o;
    o.data_dir = (fs::path(dir_) / name).string();
    return store::Store::Open(o);
  }

  std::string dir_;
  std::unique_ptr<store::Store> raw_, lossless_;
  artifact::Manifest manifest_;
};

}  // namespace

StatusOr<std::unique_ptr<Tiers>> OpenStoreTiers(const std::string& work_dir) {
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) return Status::IOError(work_dir + ": " + ec.message());
  return std::unique_ptr<Tiers>(std::make_unique<StoreTiers>(work_dir));
}

}  // namespace kvmart::economics
