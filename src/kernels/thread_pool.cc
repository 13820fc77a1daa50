#include "kernels/thread_pool.h"

#include <algorithm>

namespace kvmart {
namespace {

// Static partition: thread t of T gets the t-th of T near-equal grain-aligned ranges.
void RangeFor(size_t n, size_t grain, size_t t, size_t threads, size_t* begin, size_t* end) {
  size_t units = (n + grain - 1) / grain;
  size_t per = units / threads, extra = units % threads;
  size_t ub = t * per + std::min(t, extra);
  size_t ue = ub + per + (t < extra ? 1 : 0);
  *begin = std::min(n, ub * grain);
  *end = std::min(n, ue * grain);
}

}  // namespace

ThreadPool::ThreadPool(size_t num_threads) {
  if (num_threads == 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t threads = num_threads();
  if (threads == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = &fn;
    task_n_ = n;
    task_grain_ = grain;
    pending_ = workers_.size();
    ++generation_;
  }
  work_cv_.notify_all();
  size_t b, e;
  RangeFor(n, grain, 0, threads, &b, &e);
  if (b < e) fn(b, e);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  task_ = nullptr;
}

void ThreadPool::WorkerLoop(size_t index) {
  size_t seen = 0;
  for (;;) {
    const std::function<void(size_t, size_t)>* task;
    size_t n, grain;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      task = task_;
      n = task_n_;
      grain = task_grain_;
    }
    size_t b, e;
    RangeFor(n, grain, index, workers_.size() + 1, &b, &e);
    if (b < e) (*task)(b, e);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

}  // namespace kvmart
