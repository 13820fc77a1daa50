// Structured logs: one JSON object per line on a stream (stderr by default),
// written whole under a mutex so lines from different threads never interleave.
// API keys and request bodies are never logged.
#pragma once

#include <mutex>
#include <ostream>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kvmart::server {

class JsonLog {
 public:
  explicit JsonLog(std::ostream* out) : out_(out) {}
  // Adds "ts" (RFC 3339 UTC with milliseconds), "level" and "msg" to `fields`.
  void Write(std::string_view level, std::string_view msg, nlohmann::json fields = nlohmann::json::object());
  void set_enabled(bool on) { enabled_ = on; }

 private:
  std::mutex mu_;
  std::ostream* out_;
  bool enabled_ = true;
};

}  // namespace kvmart::server
