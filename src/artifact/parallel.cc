#include "artifact/parallel.h"

#include <atomic>
#include <thread>
#include <vector>

namespace kvmart::artifact {

Status ParallelFor(size_t n, unsigned threads, const std::function<Status(size_t)>& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (threads > n) threads = static_cast<unsigned>(n);
  std::vector<Status> results(n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto worker = [&] {
    for (size_t i; !failed.load(std::memory_order_relaxed) && (i = next.fetch_add(1)) < n;) {
      results[i] = fn(i);
      if (!results[i].ok()) failed.store(true, std::memory_order_relaxed);
    }
  };
  if (threads <= 1) {
    worker();
  } else {
    std::vector<std::jthread> pool;
    pool.reserve(threads - 1);
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
  }  // jthreads join here
  for (auto& r : results)
    if (!r.ok()) return r;
  return Status::Ok();
}

}  // namespace kvmart::artifact
