// Counts heap calls by interposing malloc, calloc and realloc (glibc's
// __libc_* do the work), for the checks that the echo path allocates
// nothing per message.  Include it in exactly one file of an executable:
// it defines the interposers.  Sanitizer builds intercept malloc
// themselves; there heap_calls_counted is false and the count stays 0.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace rg::test {
inline std::atomic<std::uint64_t> heap_calls{0};
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool heap_calls_counted = false;
#else
inline constexpr bool heap_calls_counted = true;
#endif
}  // namespace rg::test

#if !defined(__SANITIZE_ADDRESS__)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t n) {
  rg::test::heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  rg::test::heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  rg::test::heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
}
#endif
