// Host allocations for large arrays: the CPU backend's weights, packed weights and KV cache,
// and the bandwidth calibration's arrays (which must be paged as the engine's are).
//
// An allocation of at least 2 MiB is aligned to 2 MiB, rounded up to whole 2 MiB pages and
// marked for transparent huge pages (madvise MADV_HUGEPAGE, which Linux honours where THP is in
// "madvise" or "always" mode): a decode step walks hundreds of MB of weights and KV blocks, and
// with 4 KiB pages most of its loads would first miss the TLB. Smaller ones are 64-byte aligned.
// Release with std::free. Null when out of memory.
//
// Thread-safety: as malloc.
#pragma once

#include <cstddef>

namespace carpool {

void* host_alloc(size_t bytes);

// Returns the physical pages of a host_alloc allocation of at least 2 MiB to the system
// (madvise MADV_DONTNEED on its whole 2 MiB pages) while the address range stays allocated and
// reserved: for bytes that will never be read again but whose address is still a key (the CPU
// backend's stacked weights once packed). Reading the range afterwards gives zeros. Smaller
// allocations (which may share pages with others) are left alone: returns false.
bool host_release_pages(void* p, size_t bytes);

}  // namespace carpool
