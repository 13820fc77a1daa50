#include "economics/tiers.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "engine/artifact_io.h"

namespace kvmart::economics {
namespace {
namespace fs = std::filesystem;

// Reads a file once so that the timed read finds it in the page cache.
Status WarmPageCache(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IOError(path + ": cannot open");
  std::vector<char> buf(1 << 20);
  while (f.read(buf.data(), std::streamsize(buf.size())) || f.gcount() > 0) {
  }
  return Status::Ok();
}

class FileTiers final : public Tiers {
 public:
  explicit FileTiers(std::string dir) : dir_(std::move(dir)) {}
  ~FileTiers() override { Forget(); }
  FileTiers(const FileTiers&) = delete;
  FileTiers& operator=(const FileTiers&) = delete;

  std::string Description() const override {
    return "artifact files: memory = verified decoded payloads in RAM imported with ImportBlockPayload; "
           "disk = .kva file (warm page cache) opened with ArtifactReader::OpenFile, every block checked "
           "(XXH3-128, decode, SHA-256) and imported";
  }

  Status Publish(const artifact::Artifact& raw, const artifact::Artifact& lossless, uint64_t* raw_file_bytes,
                 uint64_t* lossless_file_bytes) override {
    Forget();
    raw_path_ = (fs::path(dir_) / "doc-raw.kva").string();
    lossless_path_ = (fs::path(dir_) / "doc-lossless.kva").string();
    KVMART_RETURN_IF_ERROR(artifact::WriteContainerFile(raw_path_, raw));
    KVMART_RETURN_IF_ERROR(artifact::WriteContainerFile(lossless_path_, lossless));
    *raw_file_bytes = fs::file_size(raw_path_);
    *lossless_file_bytes = fs::file_size(lossless_path_);
    KVMART_ASSIGN_OR_RETURN(auto reader, artifact::ArtifactReader::OpenFile(raw_path_));
    KVMART_ASSIGN_OR_RETURN(memory_, reader.ReadAllBlocks());
    manifest_ = reader.manifest();
    return Status::Ok();
  }

  Status Prepare(TierKind kind) override {
    switch (kind) {
      case TierKind::kMemory: return memory_.empty() ? Status::FailedPrecondition("nothing published") : Status::Ok();
      case TierKind::kDiskRaw: return WarmPageCache(raw_path_);
      case TierKind::kDiskLossless: return WarmPageCache(lossless_path_);
    }
    return Status::Internal("bad tier");
  }

  Status Load(TierKind kind, Session& session) override {
    if (kind == TierKind::kMemory) {
      for (size_t b = 0; b < manifest_.blocks.size(); ++b) {
        const auto& info = manifest_.blocks[b];
        std::span<const uint32_t> toks(manifest_.tokens.data() + info.token_begin, info.token_end - info.token_begin);
        KVMART_RETURN_IF_ERROR(ImportBlockPayload(session, info.token_begin, toks, memory_[b]));
      }
      return Status::Ok();
    }
    KVMART_ASSIGN_OR_RETURN(auto reader, artifact::ArtifactReader::OpenFile(
                                             kind == TierKind::kDiskRaw ? raw_path_ : lossless_path_));
    return ImportArtifact(session, reader);
  }

  void Forget() override {
    memory_.clear();
    manifest_ = artifact::Manifest();
    std::error_code ec;
    if (!raw_path_.empty()) fs::remove(raw_path_, ec);
    if (!lossless_path_.empty()) fs::remove(lossless_path_, ec);
    raw_path_.clear();
    lossless_path_.clear();
  }

 private:
  std::string dir_;
  std::string raw_path_, lossless_path_;
  artifact::Manifest manifest_;
  std::vector<std::vector<uint8_t>> memory_;  // decoded payloads of the raw artifact
};

}  // namespace

const char* TierKindName(TierKind k) {
  switch (k) {
    case TierKind::kMemory: return "memory";
    case TierKind::kDiskRaw: return "disk (raw)";
    case TierKind::kDiskLossless: return "disk (lossless)";
  }
  return "?";
}

StatusOr<std::unique_ptr<Tiers>> OpenFileTiers(const std::string& work_dir) {
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) return Status::IOError(work_dir + ": " + ec.message());
  return std::unique_ptr<Tiers>(std::make_unique<FileTiers>(work_dir));
}

StatusOr<std::unique_ptr<Tiers>> OpenTiers(const std::string& source, const std::string& work_dir) {
  if (source == "file") return OpenFileTiers(work_dir);
  // "auto" is kept for scripts written when the store was optional.
  if (source == "store" || source == "auto") return OpenStoreTiers(work_dir);
  return Status::InvalidArgument("tiers must be store or file, not '" + source + "'");
}

}  // namespace kvmart::economics
