#include "util/host_memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace carpool {
namespace {
constexpr size_t kCacheLine = 64;
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

void* host_alloc(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  if (bytes < kHugePage) {
    return std::aligned_alloc(kCacheLine, (bytes + kCacheLine - 1) / kCacheLine * kCacheLine);
  }
  if (bytes > SIZE_MAX - kHugePage) return nullptr;
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advice only: where THP is off the pages stay 4 KiB and nothing else changes.
  if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

bool host_release_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_DONTNEED)
  if (p == nullptr || bytes < kHugePage || bytes > SIZE_MAX - kHugePage) return false;
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;  // as host_alloc
  return madvise(p, rounded, MADV_DONTNEED) == 0;
#else
  (void)p;
  (void)bytes;
  return false;
#endif
}

}  // namespace carpool
