#include "testing/fault_file_system.h"

#include <cerrno>
#include <filesystem>

namespace kvmart::testing {

namespace {

namespace fs = std::filesystem;

std::string Normal(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

// Appends through the base file and reports to the file system, which keeps
// the counts a crash needs.
class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultFileSystem* fs, std::string path, std::unique_ptr<WritableFile> base,
                    std::shared_ptr<FaultFileSystem::FileState> state)
      : fs_(fs), path_(std::move(path)), base_(std::move(base)), state_(std::move(state)) {}

  Status Append(std::span<const uint8_t> data) override {
    std::lock_guard lock(fs_->mu_);
    KVMART_RETURN_IF_ERROR(fs_->CountWrite(path_));
    KVMART_RETURN_IF_ERROR(base_->Append(data));
    state_->size += data.size();
    return Status::Ok();
  }
  Status Sync() override {
    std::lock_guard lock(fs_->mu_);
    KVMART_RETURN_IF_ERROR(fs_->CountSync("fsync " + path_));
    if (fs_->options_.real_sync) KVMART_RETURN_IF_ERROR(base_->Sync());
    state_->synced = state_->size;
    return Status::Ok();
  }
  Status Close() override {
    std::lock_guard lock(fs_->mu_);
    KVMART_RETURN_IF_ERROR(fs_->CheckAlive("close " + path_));
    return base_->Close();
  }

 private:
  FaultFileSystem* fs_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<FaultFileSystem::FileState> state_;
};

FaultFileSystem::FaultFileSystem(std::string scratch_dir, Options options, std::shared_ptr<FileSystem> base)
    : scratch_dir_(Normal(scratch_dir)), options_(options), base_(std::move(base)), rng_(options.seed) {
  fs::create_directories(scratch_dir_);
}

void FaultFileSystem::CrashAtSync(uint64_t n) {
  std::lock_guard lock(mu_);
  crash_at_sync_ = n;
}
void FaultFileSystem::FailWrite(uint64_t n, int err) {
  std::lock_guard lock(mu_);
  fail_write_ = n;
  fail_write_errno_ = err;
}
void FaultFileSystem::FailSync(uint64_t n, int err) {
  std::lock_guard lock(mu_);
  fail_sync_ = n;
  fail_sync_errno_ = err;
}
void FaultFileSystem::Stop() {
  std::lock_guard lock(mu_);
  crashed_ = true;
}
bool FaultFileSystem::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}
uint64_t FaultFileSystem::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}
uint64_t FaultFileSystem::syncs() const {
  std::lock_guard lock(mu_);
  return syncs_;
}
uint64_t FaultFileSystem::unsynced_bytes() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [path, st] : files_) n += st->size - st->synced;
  return n;
}
size_t FaultFileSystem::pending_directory_ops() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

Status FaultFileSystem::CheckAlive(const std::string& what) const {
  if (crashed_) return Status::IOError(what + ": simulated crash (the machine has stopped)");
  return Status::Ok();
}

Status FaultFileSystem::CountWrite(const std::string& path) {
  KVMART_RETURN_IF_ERROR(CheckAlive("write " + path));
  ++writes_;
  if (writes_ == fail_write_) return ErrnoStatus(fail_write_errno_, "write " + path + " (injected fault)");
  return Status::Ok();
}

Status FaultFileSystem::CountSync(const std::string& what) {
  KVMART_RETURN_IF_ERROR(CheckAlive(what));
  ++syncs_;
  if (syncs_ == crash_at_sync_) {
    crashed_ = true;
    return CheckAlive(what);
  }
  if (syncs_ == fail_sync_) return ErrnoStatus(fail_sync_errno_, what + " (injected fault)");
  return Status::Ok();
}

std::string FaultFileSystem::TrashPath() { return scratch_dir_ + "/trash-" + std::to_string(++trash_count_); }

void FaultFileSystem::Record(DirOp op) {
  if (options_.directory_ops_durable) {
    if (!op.trash.empty()) {
      std::error_code ec;
      fs::remove(op.trash, ec);
      files_.erase(op.trash);
    }
    return;
  }
  pending_.push_back(std::move(op));
}

StatusOr<std::unique_ptr<WritableFile>> FaultFileSystem::CreateFile(const std::string& path_in) {
  const std::string path = Normal(path_in);
  std::lock_guard lock(mu_);
  KVMART_RETURN_IF_ERROR(CheckAlive("create " + path));
  KVMART_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> base, base_->CreateFile(path));
  auto state = std::make_shared<FileState>();
  files_[path] = state;
  Record({OpKind::kCreateFile, path, "", "", {Parent(path)}});
  return std::unique_ptr<WritableFile>(std::make_unique<FaultWritableFile>(this, path, std::move(base), state));
}

StatusOr<std::unique_ptr<ReadableFile>> FaultFileSystem::OpenForRead(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    KVMART_RETURN_IF_ERROR(CheckAlive("open " + path));
  }
  // Reads see what is on the disk now, as on a running machine; the base
  // file is handed out as it is, so reads cost what they cost on POSIX.
  return base_->OpenForRead(path);
}

StatusOr<FileInfo> FaultFileSystem::Stat(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    KVMART_RETURN_IF_ERROR(CheckAlive("stat " + path));
  }
  return base_->Stat(path);
}

StatusOr<std::vector<DirEntry>> FaultFileSystem::ListDir(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    KVMART_RETURN_IF_ERROR(CheckAlive("list " + path));
  }
  return base_->ListDir(path);
}

Status FaultFileSystem::CreateDir(const std::string& path_in, bool* created) {
  const std::string path = Normal(path_in);
  std::lock_guard lock(mu_);
  KVMART_RETURN_IF_ERROR(CheckAlive("mkdir " + path));
  KVMART_RETURN_IF_ERROR(base_->CreateDir(path, created));
  if (*created) Record({OpKind::kMakeDir, path, "", "", {Parent(path)}});
  return Status::Ok();
}

Status FaultFileSystem::RemoveFile(const std::string& path_in) {
  const std::string path = Normal(path_in);
  std::lock_guard lock(mu_);
  KVMART_RETURN_IF_ERROR(CheckAlive("unlink " + path));
  KVMART_ASSIGN_OR_RETURN(FileInfo info, base_->Stat(path));
  if (!info.is_regular) return base_->RemoveFile(path);  // let the base say why not
  // Kept aside, not unlinked: until the directory is synced the entry may
  // come back.
  const std::string trash = TrashPath();
  KVMART_RETURN_IF_ERROR(base_->Rename(path, trash));
  if (auto it = files_.find(path); it != files_.end()) {
    files_[trash] = it->second;
    files_.erase(it);
  }
  Record({OpKind::kRemoveFile, path, "", trash, {Parent(path)}});
  return Status::Ok();
}

Status FaultFileSystem::RemoveDir(const std::string& path_in) {
  const std::string path = Normal(path_in);
  std::lock_guard lock(mu_);
  KVMART_RETURN_IF_ERROR(CheckAlive("rmdir " + path));
  KVMART_RETURN_IF_ERROR(base_->RemoveDir(path));
  Record({OpKind::kRemoveDir, path, "", "", {Parent(path)}});
  return Status::Ok();
}

Status FaultFileSystem::Rename(const std::string& from_in, const std::string& to_in) {
  const std::string from = Normal(from_in), to = Normal(to_in);
  std::lock_guard lock(mu_);
  KVMART_RETURN_IF_ERROR(CheckAlive("rename " + from));
  KVMART_ASSIGN_OR_RETURN(FileInfo src, base_->Stat(from));
  if (!src.is_regular) return Status::InvalidArgument("fault file system: renames files only: " + from);
  std::string trash;
  if (auto target = base_->Stat(to); target.ok()) {
    // The replaced file: a crash before the directory sync brings it back.
    trash = TrashPath();
    KVMART_RETURN_IF_ERROR(base_->Rename(to, trash));
    if (auto it = files_.find(to); it != files_.end()) {
      files_[trash] = it->second;
      files_.erase(it);
    }
  }
  if (Status st = base_->Rename(from, to); !st.ok()) {
    if (!trash.empty()) (void)base_->Rename(trash, to);
    return st;
  }
  if (auto it = files_.find(from); it != files_.end()) {
    files_[to] = it->second;
    files_.erase(it);
  }
  Record({OpKind::kRename, to, from, trash, {Parent(from), Parent(to)}});
  return Status::Ok();
}

Status FaultFileSystem::SyncDir(const std::string& path_in) {
  const std::string path = Normal(path_in);
  std::lock_guard lock(mu_);
  KVMART_RETURN_IF_ERROR(CountSync("fsync directory " + path));
  if (options_.real_sync) KVMART_RETURN_IF_ERROR(base_->SyncDir(path));
  std::vector<DirOp> still;
  for (DirOp& op : pending_) {
    op.unsynced_dirs.erase(path);
    if (!op.unsynced_dirs.empty()) {
      still.push_back(std::move(op));
      continue;
    }
    // Durable: a removed or replaced file is gone for good.
    if (!op.trash.empty()) {
      std::error_code ec;
      fs::remove(op.trash, ec);
      files_.erase(op.trash);
    }
  }
  pending_ = std::move(still);
  return Status::Ok();
}

StatusOr<std::unique_ptr<FileLock>> FaultFileSystem::LockFile(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    KVMART_RETURN_IF_ERROR(CheckAlive("lock " + path));
  }
  // A lock is not data; the kernel drops it with the process.
  return base_->LockFile(path);
}

Status FaultFileSystem::Crash() {
  std::lock_guard lock(mu_);
  std::error_code ec;
  // 1. File data: what was not synced is cut (torn: partly kept).
  for (const auto& [path, st] : files_) {
    if (st->size == st->synced) continue;
    uint64_t keep = st->synced;
    if (options_.tear_unsynced) keep += rng_() % (st->size - st->synced + 1);
    if (fs::exists(path, ec)) {
      fs::resize_file(path, keep, ec);
      if (ec) return Status::IOError("crash: truncate " + path + ": " + ec.message());
    }
  }
  // 2. Directory operations not synced, newest first.
  for (auto op = pending_.rbegin(); op != pending_.rend(); ++op) {
    switch (op->kind) {
      case OpKind::kCreateFile:
        fs::remove(op->path, ec);
        break;
      case OpKind::kMakeDir:
        fs::remove_all(op->path, ec);
        break;
      case OpKind::kRename:
        fs::rename(op->path, op->from, ec);
        if (!ec && !op->trash.empty()) fs::rename(op->trash, op->path, ec);
        break;
      case OpKind::kRemoveFile:
        fs::rename(op->trash, op->path, ec);
        break;
      case OpKind::kRemoveDir:
        fs::create_directory(op->path, ec);
        break;
    }
    // An entry inside a directory already undone is gone with it.
    if (ec && ec != std::errc::no_such_file_or_directory)
      return Status::IOError("crash: undo " + op->path + ": " + ec.message());
    ec.clear();
  }
  pending_.clear();
  files_.clear();  // after the reboot everything on disk is durable
  crashed_ = false;
  crash_at_sync_ = 0;
  fail_write_ = fail_sync_ = 0;
  return Status::Ok();
}

}  // namespace kvmart::testing
