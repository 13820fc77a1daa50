// A fixed pool of worker threads for splitting *outputs* of a kernel.
//
// Exactness: work is split by output index only, never inside a reduction, so
// the thread count cannot change a single bit of any result (docs/DESIGN.md §3 rule 2).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvmart {

class ThreadPool {
 public:
  // num_threads includes the calling thread; 0 means all hardware threads.
  explicit ThreadPool(size_t num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t num_threads() const { return workers_.size() + 1; }

  // Calls fn(begin, end) on disjoint contiguous ranges covering [0, n), using
  // every thread, and returns when all are done. Ranges are aligned to `grain`.
  // Not reentrant: fn must not call ParallelFor on the same pool.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

 private:
  void WorkerLoop(size_t index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t, size_t)>* task_ = nullptr;
  size_t task_n_ = 0;
  size_t task_grain_ = 1;
  size_t generation_ = 0;
  size_t pending_ = 0;
  bool stop_ = false;
};

}  // namespace kvmart
