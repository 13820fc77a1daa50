// Recycled byte buffers for the disk read path.
//
// A 37.7 MB block (Qwen3-4B, 256 tokens) is above glibc's largest mmap
// threshold, so every fresh vector of that size is a new mapping: the kernel
// zeroes and faults in every page again, which costs as much as reading the
// warm file itself. Loads therefore take their read and payload buffers from
// here, and a payload handed to a consumer comes back when its last
// shared_ptr dies (the deleter holds only a weak reference, so buffers that
// outlive the store are simply freed). The pool keeps a bounded number of
// bytes; beyond that buffers are freed as usual.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace kvmart::store {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  using Buffer = std::unique_ptr<std::vector<uint8_t>>;

  explicit BufferPool(uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // A buffer of exactly `size` bytes (contents unspecified).
  Buffer Take(uint64_t size) {
    Buffer b;
    {
      std::lock_guard lock(mu_);
      // The smallest free buffer with enough capacity: no reallocation.
      size_t best = free_.size();
      for (size_t i = 0; i < free_.size(); ++i)
        if (free_[i]->capacity() >= size && (best == free_.size() || free_[i]->capacity() < free_[best]->capacity()))
          best = i;
      if (best != free_.size()) {
        b = std::move(free_[best]);
        free_[best] = std::move(free_.back());
        free_.pop_back();
        held_ -= b->capacity();
      }
    }
    if (b == nullptr) b = std::make_unique<std::vector<uint8_t>>();
    // Growing within capacity only value-initialises the new tail.
    b->resize(size);
    return b;
  }

  void Give(Buffer b) {
    if (b == nullptr) return;
    std::lock_guard lock(mu_);
    if (held_ + b->capacity() > max_bytes_) return;  // freed on return
    held_ += b->capacity();
    free_.push_back(std::move(b));
  }

  // Shares a buffer; it returns to the pool (if still alive) when the last
  // reference goes.
  std::shared_ptr<const std::vector<uint8_t>> Share(Buffer b) {
    std::weak_ptr<BufferPool> pool = weak_from_this();
    return std::shared_ptr<const std::vector<uint8_t>>(b.release(), [pool](const std::vector<uint8_t>* p) {
      Buffer owned(const_cast<std::vector<uint8_t>*>(p));
      if (auto alive = pool.lock()) alive->Give(std::move(owned));
    });
  }

  void Clear() {
    std::lock_guard lock(mu_);
    free_.clear();
    held_ = 0;
  }

 private:
  const uint64_t max_bytes_;
  std::mutex mu_;
  std::vector<Buffer> free_;
  uint64_t held_ = 0;
};

}  // namespace kvmart::store
