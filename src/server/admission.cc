#include "server/admission.h"

namespace kvmart::server {

Admission::Admission(size_t max_active, size_t max_queue, Metrics* metrics)
    : max_active_(max_active == 0 ? 1 : max_active), max_queue_(max_queue), metrics_(metrics) {}

Admission::Slot& Admission::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    Release();
    owner_ = o.owner_;
    o.owner_ = nullptr;
  }
  return *this;
}

void Admission::Slot::Release() {
  if (owner_ != nullptr) owner_->ReleaseOne();
  owner_ = nullptr;
}

StatusOr<Admission::Slot> Admission::Acquire(const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) return Status::Aborted("server is shutting down");
  if (active_ >= max_active_) {
    if (waiting_ >= max_queue_) return Status::ResourceExhausted("server busy: engine queue is full");
    ++waiting_;
    metrics_->queue_depth.fetch_add(1);
    bool gave_up = false;
    // Poll the cancellation predicate a few times a second: a client that
    // disconnects while queued must not hold its queue place.
    while (active_ >= max_active_ && !shutdown_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (cancelled && cancelled()) {
        gave_up = true;
        break;
      }
    }
    --waiting_;
    metrics_->queue_depth.fetch_sub(1);
    if (gave_up) {
      cv_.notify_one();  // pass on a wake-up we may have consumed
      return Status::Aborted("client went away while queued");
    }
    if (shutdown_) return Status::Aborted("server is shutting down");
  }
  ++active_;
  metrics_->active_sessions.fetch_add(1);
  return Slot(this);
}

void Admission::ReleaseOne() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --active_;
    metrics_->active_sessions.fetch_sub(1);
  }
  cv_.notify_one();
}

void Admission::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

int Admission::RetryAfterSeconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(1 + waiting_ / max_active_);
}

}  // namespace kvmart::server
