// Admission control for the engine: at most `max_active` requests hold a
// session at once (each owns a KV cache, so this bounds memory), at most
// `max_queue` more wait for one, and anything beyond is refused at once so the
// HTTP layer can answer 429 with Retry-After instead of letting latency grow
// without bound.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>

#include "base/status.h"
#include "server/metrics.h"

namespace kvmart::server {

class Admission {
 public:
  Admission(size_t max_active, size_t max_queue, Metrics* metrics);

  // Held while a request uses the engine; releasing wakes one waiter.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : owner_(o.owner_) { o.owner_ = nullptr; }
    Slot& operator=(Slot&& o) noexcept;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class Admission;
    explicit Slot(Admission* owner) : owner_(owner) {}
    Admission* owner_ = nullptr;
  };

  // ResourceExhausted when the queue is full; Aborted when `cancelled` turns
  // true while waiting (the client left) or the server is stopping.
  StatusOr<Slot> Acquire(const std::function<bool()>& cancelled);
  // Wakes all waiters with Aborted; later Acquire calls fail the same way.
  void Shutdown();
  // A rough hint for Retry-After: seconds until a queued request might start.
  int RetryAfterSeconds() const;

 private:
  void ReleaseOne();

  const size_t max_active_, max_queue_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t active_ = 0, waiting_ = 0;
  bool shutdown_ = false;
};

}  // namespace kvmart::server
