// The disk tier: one file per stored block under a fan-out directory.
//
//   <root>/ab/cd/<chain hex>-<xxh3 hex>.blk
//
// A block is named by its chain hash *and* the XXH3-128 of its stored bytes,
// because two artifacts may carry the same KV (same chain hash, same payload)
// under different codecs; identical encodings (the usual case) share one file.
// Files hold exactly the stored bytes, nothing else: the catalog knows sizes and
// checksums, and a reader trusts nothing before checking them.
//
// Writes are atomic: a temporary name (".tmp-" prefix) in the target directory,
// write, fsync, rename, fsync of the directory. A crash leaves at worst a
// temporary file or a complete file no catalog row names; both are removed by
// Scan's callers (Store::Open, Store::Gc).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "artifact/manifest.h"
#include "base/file_system.h"
#include "base/sha256.h"
#include "base/status.h"

namespace kvmart::store {

struct BlockKey {
  Digest256 chain{};
  artifact::Xxh3Digest xxh3{};
  bool operator==(const BlockKey&) const = default;
};

struct DigestHash {
  size_t operator()(const Digest256& d) const {
    size_t h;
    static_assert(sizeof(h) <= sizeof(Digest256));
    std::memcpy(&h, d.data(), sizeof(h));  // already uniformly distributed
    return h;
  }
};
struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const {
    size_t a = DigestHash()(k.chain), b;
    std::memcpy(&b, k.xxh3.data(), sizeof(b));
    return a ^ (b * 0x9e3779b97f4a7c15ull);
  }
};

class BlockFiles {
 public:
  // durable = fsync files and directories (crash safety depends on it). All
  // file I/O goes through `fs` (base/file_system.h).
  BlockFiles(std::shared_ptr<FileSystem> fs, std::string root, bool durable)
      : fs_(std::move(fs)), root_(std::move(root)), durable_(durable) {}

  // Creates the root directory (and missing parents, each synced into its
  // parent when durable) if needed.
  Status Init() const;
  const std::string& root() const { return root_; }

  std::string PathFor(const BlockKey& key) const;
  static std::string FileName(const BlockKey& key);
  static std::optional<BlockKey> ParseFileName(std::string_view name);

  // Atomically creates or replaces the file of `key`. A full disk or a file size
  // limit is ResourceExhausted; the temporary file is removed on any failure.
  Status Write(const BlockKey& key, std::span<const uint8_t> bytes) const;

  // Reads exactly `size` bytes into `out` (resized). A missing file is NotFound,
  // a file of another size is Corruption (truncated or extended on disk).
  Status Read(const BlockKey& key, uint64_t size, std::vector<uint8_t>* out) const;
  // The same into caller memory of exactly `size` bytes.
  Status ReadInto(const BlockKey& key, std::span<uint8_t> out) const;

  // true when the file exists with exactly `size` bytes.
  bool Exists(const BlockKey& key, uint64_t size) const;

  // Unlinks the file (missing is fine).
  Status Remove(const BlockKey& key) const;

  // Calls fn(path, key, size) for every regular file under the root; key is
  // nullopt for anything that is not a block file name (temporary files
  // included).
  Status Scan(const std::function<void(const std::string& path, const std::optional<BlockKey>& key,
                                       uint64_t size)>& fn) const;
  // Unlinks a file Scan reported (missing is fine).
  Status RemovePath(const std::string& path) const;

  // Removes empty fan-out directories (after GC); best effort.
  void PruneEmptyDirs() const;

 private:
  Status EnsureDir(const std::string& dir) const;
  std::shared_ptr<FileSystem> fs_;
  std::string root_;
  bool durable_;
};

}  // namespace kvmart::store
