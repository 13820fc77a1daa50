// libFuzzer target for the safetensors reader: the input becomes a checkpoint
// directory's model.safetensors (the reader maps files, so the bytes go
// through a file), then every tensor's dtype is read. Any crash, sanitizer
// report, or allocation above the RSS limit is a finding; a hostile header
// must be Corruption, whatever sizes and offsets it declares.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/safetensors.h"

namespace {

// The directory this fuzzing process writes its one file into.
const std::string& WorkDir() {
  static const std::string dir = [] {
    std::string tmpl = "/tmp/kvmart-fuzz-safetensors-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    return tmpl;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = WorkDir() + "/model.safetensors";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  auto ck = kvmart::Checkpoint::Open(WorkDir());
  if (ck.ok()) {
    for (const auto& [name, t] : (*ck)->tensors()) (void)t.weight_dtype();
  }
  return 0;
}
