// A progress bar on stderr, drawn only when stderr is a terminal.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kvmart::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total)
      : label_(std::move(label)), total_(total), enabled_(::isatty(STDERR_FILENO) == 1),
        start_(std::chrono::steady_clock::now()) {}
  ~ProgressBar() { Finish(); }

  void Update(uint64_t done) { Draw(done, total_, "tok"); }
  void UpdateBytes(uint64_t done, uint64_t total) { Draw(done >> 20, total >> 20, "MiB"); }
  void Finish() {
    if (enabled_ && drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  void Draw(uint64_t done, uint64_t total, const char* unit) {
    if (!enabled_ || total == 0) return;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int width = 30, fill = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r%s [%.*s%*s] %llu/%llu %s  %.1f %s/s", label_.c_str(), fill,
                 "##############################", width - fill, "", static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total), unit, secs > 0 ? done / secs : 0.0, unit);
    drawn_ = true;
  }
  std::string label_;
  uint64_t total_;
  bool enabled_, drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace kvmart::cli
