// Command-line contract shared by every benchmark program: `--help` (or -h)
// prints the usage on stdout and exits 0; an unknown option or an option
// without its value prints the usage on stderr and exits 2 — in both cases
// before any work starts (a benchmark may write gigabytes of checkpoints).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kvmart::bench {

class Usage {
 public:
  explicit Usage(std::string text) : text_(std::move(text)) {}

  // Exits 0 with the usage on stdout when argv holds --help or -h.
  void HandleHelp(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
        std::fputs(text_.c_str(), stdout);
        std::exit(0);
      }
    }
  }

  [[noreturn]] void Fail(const std::string& why) const {
    std::fprintf(stderr, "error: %s\n%s", why.c_str(), text_.c_str());
    std::exit(2);
  }

  // The value after argv[*i] (advancing *i), or Fail when there is none.
  std::string Value(int argc, char** argv, int* i) const {
    if (*i + 1 >= argc) Fail(std::string("missing value for ") + argv[*i]);
    return argv[++*i];
  }

 private:
  std::string text_;
};

}  // namespace kvmart::bench
