#include "server/json_log.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace kvmart::server {

void JsonLog::Write(std::string_view level, std::string_view msg, nlohmann::json fields) {
  if (!enabled_ || out_ == nullptr) return;
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  fields["ts"] = buf;
  fields["level"] = level;
  fields["msg"] = msg;
  const std::string line = fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(mu_);
  *out_ << line << '\n';
  out_->flush();
}

}  // namespace kvmart::server
