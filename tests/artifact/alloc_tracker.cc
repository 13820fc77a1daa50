// Replaces the test binary's global operator new to record the largest single
// allocation, so tests can prove that hostile size fields never drive one. Kept
// in its own file so the compiler never inlines new/delete pairs across it.
#include <atomic>
#include <cstdlib>
#include <new>

namespace kvmart::artifact::testing {
std::atomic<size_t> g_max_alloc{0};
}

void* operator new(size_t n) {
  auto& m = kvmart::artifact::testing::g_max_alloc;
  size_t cur = m.load(std::memory_order_relaxed);
  while (n > cur && !m.compare_exchange_weak(cur, n)) {
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
