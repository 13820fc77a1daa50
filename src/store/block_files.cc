#include "store/block_files.h"

#include <unistd.h>

#include <cstring>
#include <random>

namespace kvmart::store {
namespace {

constexpr std::string_view kSuffix = ".blk";
constexpr std::string_view kTempPrefix = ".tmp-";

// Unique across threads and processes: pid plus 64 random bits.
std::string TempName() {
  std::random_device rd;
  uint64_t r = (uint64_t{rd()} << 32) | rd();
  return std::string(kTempPrefix) + std::to_string(::getpid()) + "-" + ToHex(&r, sizeof(r));
}

}  // namespace

Status BlockFiles::Init() const { return CreateDirs(*fs_, root_, durable_); }

std::string BlockFiles::FileName(const BlockKey& key) {
  return ToHex(key.chain) + "-" + ToHex(key.xxh3.data(), key.xxh3.size()) + std::string(kSuffix);
}

std::optional<BlockKey> BlockFiles::ParseFileName(std::string_view name) {
  // 64 hex, '-', 32 hex, ".blk"
  if (name.size() != 64 + 1 + 32 + kSuffix.size() || name[64] != '-' || name.substr(97) != kSuffix) return std::nullopt;
  std::string a, b;
  if (!FromHex(name.substr(0, 64), &a) || !FromHex(name.substr(65, 32), &b)) return std::nullopt;
  BlockKey k;
  std::memcpy(k.chain.data(), a.data(), 32);
  std::memcpy(k.xxh3.data(), b.data(), 16);
  // Only the canonical lower-case spelling is ours.
  if (FileName(k) != name) return std::nullopt;
  return k;
}

std::string BlockFiles::PathFor(const BlockKey& key) const {
  std::string hex = ToHex(key.chain);
  return root_ + "/" + hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/" + FileName(key);
}

Status BlockFiles::EnsureDir(const std::string& dir) const {
  // Two levels below the root; each newly created directory's entry must itself
  // be durable before a file inside it can be.
  std::string parent = dir.substr(0, dir.rfind('/'));
  for (const std::string& d : {parent, dir}) {
    bool created = false;
    KVMART_RETURN_IF_ERROR(fs_->CreateDir(d, &created));
    if (created && durable_) {
      if (Status st = fs_->SyncDir(d.substr(0, d.rfind('/'))); !st.ok()) {
        // Not durable, and a retry would find it and not sync again: it goes,
        // so the next write makes (and syncs) it afresh.
        (void)fs_->RemoveDir(d);
        return st;
      }
    }
  }
  return Status::Ok();
}

Status BlockFiles::Write(const BlockKey& key, std::span<const uint8_t> bytes) const {
  const std::string path = PathFor(key);
  const std::string dir = path.substr(0, path.rfind('/'));
  KVMART_RETURN_IF_ERROR(EnsureDir(dir));
  const std::string tmp = dir + "/" + TempName();
  KVMART_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, fs_->CreateFile(tmp));
  auto fail = [&](const Status& st) {
    file.reset();
    (void)fs_->RemoveFile(tmp);
    return st;
  };
  if (Status st = file->Append(bytes); !st.ok()) return fail(st);
  // A failed fsync is final: the temporary file goes, the write is not
  // acknowledged, and a retry writes a new file (docs/SECURITY.md, "Storage faults").
  if (durable_)
    if (Status st = file->Sync(); !st.ok()) return fail(st);
  if (Status st = file->Close(); !st.ok()) return fail(st);
  if (Status st = fs_->Rename(tmp, path); !st.ok()) return fail(st);
  // The rename is not durable until the directory is synced; a failure here
  // leaves a complete file under its final name that the caller may remove.
  if (durable_) KVMART_RETURN_IF_ERROR(fs_->SyncDir(dir));
  return Status::Ok();
}

Status BlockFiles::Read(const BlockKey& key, uint64_t size, std::vector<uint8_t>* out) const {
  if (out->size() != size) out->resize(size);
  return ReadInto(key, *out);
}

Status BlockFiles::ReadInto(const BlockKey& key, std::span<uint8_t> out) const {
  const std::string path = PathFor(key);
  const uint64_t size = out.size();
  KVMART_ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, fs_->OpenForRead(path));
  KVMART_ASSIGN_OR_RETURN(const uint64_t on_disk, file->Size());
  if (on_disk != size)
    return Status::Corruption(path + ": " + std::to_string(on_disk) + " bytes on disk, catalog says " +
                              std::to_string(size));
  size_t done = 0;
  while (done < size) {
    KVMART_ASSIGN_OR_RETURN(const size_t n, file->ReadAt(done, out.subspan(done)));
    if (n == 0) return Status::Corruption(path + ": file shrank while reading");
    done += n;
  }
  return Status::Ok();
}

bool BlockFiles::Exists(const BlockKey& key, uint64_t size) const {
  auto info = fs_->Stat(PathFor(key));
  return info.ok() && info->is_regular && info->size == size;
}

Status BlockFiles::Remove(const BlockKey& key) const { return RemovePath(PathFor(key)); }

Status BlockFiles::RemovePath(const std::string& path) const {
  Status st = fs_->RemoveFile(path);
  return st.code() == Status::Code::kNotFound ? Status::Ok() : st;
}

Status BlockFiles::Scan(
    const std::function<void(const std::string& path, const std::optional<BlockKey>& key, uint64_t size)>& fn)
    const {
  struct Found {
    std::string path;
    std::optional<BlockKey> key;
    uint64_t size;
  };
  std::vector<Found> found;
  std::vector<std::string> dirs = {root_};
  while (!dirs.empty()) {
    const std::string dir = std::move(dirs.back());
    dirs.pop_back();
    KVMART_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, fs_->ListDir(dir));
    for (const DirEntry& e : entries) {
      const std::string path = dir + "/" + e.name;
      if (e.is_directory) {
        dirs.push_back(path);
        continue;
      }
      if (!e.is_regular) continue;
      std::optional<BlockKey> key = ParseFileName(e.name);
      // A block file must also sit in the directory its name implies.
      if (key && path != PathFor(*key)) key.reset();
      auto info = fs_->Stat(path);
      found.push_back({path, key, info.ok() ? info->size : 0});
    }
  }
  // Callbacks may delete files; run them after the walk.
  for (const Found& f : found) fn(f.path, f.key, f.size);
  return Status::Ok();
}

void BlockFiles::PruneEmptyDirs() const {
  // Depth first, children before their parent, so a parent is empty by the
  // time it is tried; the root stays.
  std::function<void(const std::string&)> prune = [&](const std::string& dir) {
    auto entries = fs_->ListDir(dir);
    if (!entries.ok()) return;
    for (const DirEntry& e : *entries)
      if (e.is_directory) {
        prune(dir + "/" + e.name);
        (void)fs_->RemoveDir(dir + "/" + e.name);  // fails (harmlessly) if not empty
      }
  };
  prune(root_);
}

}  // namespace kvmart::store
