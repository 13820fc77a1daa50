// Replaces the test binary's global operator new to record the largest single
// allocation, so tests can prove that hostile size fields never drive one. Kept
// in its own file so the compiler never inlines new/delete pairs across it. Every
// non-aligned form is replaced, so that allocation and release always pair up
// (AddressSanitizer checks that).
#include <atomic>
#include <cstdlib>
#include <new>

namespace kvmart::artifact::testing {
std::atomic<size_t> g_max_alloc{0};
}

namespace {
void* Track(size_t n) noexcept {
  auto& m = kvmart::artifact::testing::g_max_alloc;
  size_t cur = m.load(std::memory_order_relaxed);
  while (n > cur && !m.compare_exchange_weak(cur, n)) {
  }
  return std::malloc(n ? n : 1);
}
}  // namespace

void* operator new(size_t n) {
  if (void* p = Track(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  if (void* p = Track(n)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t n, const std::nothrow_t&) noexcept { return Track(n); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return Track(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
