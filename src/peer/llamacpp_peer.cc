#include "peer/llamacpp_peer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace kvmart {

using nlohmann::json;

std::string DefaultLlamaCppPeerBinary() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "kvmart-llamacpp-peer";
  return (exe.parent_path() / "kvmart-llamacpp-peer").string();
}

StatusOr<std::unique_ptr<LlamaCppPeer>> LlamaCppPeer::Start(const LlamaCppPeerOptions& o) {
  const std::string bin = o.binary.empty() ? DefaultLlamaCppPeerBinary() : o.binary;
  if (access(bin.c_str(), X_OK) != 0) {
    return Status::FailedPrecondition(
        "the llama.cpp peer " + bin +
        " is not built: `make setup` installs the npm package node-llama-cpp (prebuilt llama.cpp and its headers), "
        "then `make build` builds the peer against it");
  }
  // A peer that dies mid-request must be an error here, not a SIGPIPE that
  // kills the measuring process.
  signal(SIGPIPE, SIG_IGN);
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Status::IOError(std::string("pipe: ") + std::strerror(errno));
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return Status::IOError(std::string("pipe: ") + std::strerror(errno));
  }
  const std::vector<std::string> args = {bin, "--gguf", o.gguf_path, "--threads", std::to_string(o.threads),
                                         "--ctx", std::to_string(o.context), "--seqs", std::to_string(o.sequences)};
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return Status::IOError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  auto p = std::make_unique<LlamaCppPeer>(Key{});
  p->pid_ = pid;
  p->to_child_ = in[1];
  p->from_child_ = out[0];
  KVMART_ASSIGN_OR_RETURN(json info, p->Call({{"op", "info"}}));
  p->system_info_ = info.value("system", "");
  char tmpl[] = "/tmp/kvmart-peer-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Status::IOError(std::string("mkdtemp: ") + std::strerror(errno));
  p->scratch_dir_ = tmpl;
  return p;
}

LlamaCppPeer::~LlamaCppPeer() {
  if (to_child_ >= 0) close(to_child_);  // EOF on stdin: the peer exits
  if (from_child_ >= 0) close(from_child_);
  if (pid_ > 0) {
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (!scratch_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch_dir_, ec);
  }
}

StatusOr<json> LlamaCppPeer::Call(const json& request) {
  const std::string line = request.dump() + "\n";
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = write(to_child_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IOError("the llama.cpp peer stopped reading its requests");
    done += static_cast<size_t>(n);
  }
  size_t nl;
  while ((nl = pending_.find('\n')) == std::string::npos) {
    char buf[65536];
    const ssize_t n = read(from_child_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IOError("the llama.cpp peer exited without answering (see its stderr)");
    pending_.append(buf, static_cast<size_t>(n));
  }
  json ans = json::parse(pending_.substr(0, nl), nullptr, false);
  pending_.erase(0, nl + 1);
  if (ans.is_discarded() || !ans.is_object()) return Status::Internal("the llama.cpp peer answered something that is not JSON");
  if (!ans.value("ok", false)) return Status::Internal("llama.cpp peer: " + ans.value("error", std::string("unknown error")));
  return ans;
}

StatusOr<LlamaCppPeer::Prefill> LlamaCppPeer::PrefillAndDecode(const std::vector<int32_t>& tokens, int decode_steps) {
  KVMART_ASSIGN_OR_RETURN(json a, Call({{"op", "prefill"}, {"tokens", tokens}, {"steps", decode_steps}}));
  return Prefill{a.value("seconds", 0.0), a.value("decode_seconds", 0.0)};
}

StatusOr<LlamaCppPeer::Reuse> LlamaCppPeer::LoadAndContinue(const std::vector<int32_t>& doc,
                                                            const std::vector<int32_t>& continuation) {
  KVMART_ASSIGN_OR_RETURN(json a, Call({{"op", "reuse"}, {"tokens", doc}, {"continue", continuation}}));
  return Reuse{a.value("seconds", 0.0), a.value("load_seconds", 0.0), a.value("context_seconds", 0.0),
               a.value("state_bytes", uint64_t{0})};
}

StatusOr<double> LlamaCppPeer::BatchedDecode(const std::vector<int32_t>& prefix, int sequences, int steps) {
  KVMART_ASSIGN_OR_RETURN(json a, Call({{"op", "batch"}, {"tokens", prefix}, {"sequences", sequences}, {"steps", steps}}));
  return a.value("seconds", 0.0);
}

StatusOr<std::vector<float>> LlamaCppPeer::Logits(const std::vector<int32_t>& tokens, int last, size_t vocab) {
  const std::string path = scratch_dir_ + "/logits.f32";
  KVMART_ASSIGN_OR_RETURN(json a, Call({{"op", "logits"}, {"tokens", tokens}, {"last", last}, {"out", path}}));
  if (a.value("vocab", size_t{0}) != vocab) {
    return Status::FailedPrecondition("llama.cpp's vocabulary has " + std::to_string(a.value("vocab", 0)) +
                                      " entries, the model " + std::to_string(vocab));
  }
  std::vector<float> out(static_cast<size_t>(last) * vocab);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
  if (!f) return Status::IOError("cannot read the peer's logits from " + path);
  return out;
}

}  // namespace kvmart
