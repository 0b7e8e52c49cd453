// STREAM-like memory bandwidth: best of several passes of a read-only sum (what a decode step
// does to the weights) and of the triad a[i] = b[i] + s * c[i], over arrays far larger than the
// caches, on OMP_NUM_THREADS threads. Prints one JSON object (GB/s, 1 GB = 1e9 bytes; the triad
// counts 3 x 8 bytes per element, not the write-allocate read).
//
// The arrays are 2 MiB aligned and advised for transparent huge pages, as carpool's weights and
// KV cache are (util/host_memory.h): on this benchmark's 2-core Zen 4 VM the same loops read
// 23-28 GB/s on 4 KiB pages and 31-33 GB/s on huge pages, and decode itself reached 32 GB/s, so
// only the huge-page figure is a ceiling for MBU.
#define _GNU_SOURCE
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static double now(void) { return omp_get_wtime(); }

static double* huge_array(long n) {
  const size_t page = 2u << 20;
  const size_t bytes = (n * sizeof(double) + page - 1) / page * page;
  double* p = aligned_alloc(page, bytes);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

int main(int argc, char** argv) {
  const long n = argc > 1 ? atol(argv[1]) : 32L << 20;  // elements per array
  const int reps = argc > 2 ? atoi(argv[2]) : 12;
  double* a = huge_array(n);
  double* b = huge_array(n);
  double* c = huge_array(n);
  if (!a || !b || !c) return 1;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) {
    a[i] = 1.0;
    b[i] = 2.0;
    c[i] = 0.5;
  }
  double best_read = 1e30, best_triad = 1e30, sink = 0;
  for (int r = 0; r < reps; ++r) {
    double t0 = now(), s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (long i = 0; i < n; ++i) s += b[i];
    double t1 = now();
    sink += s;
    if (t1 - t0 < best_read) best_read = t1 - t0;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; ++i) a[i] = b[i] + 3.0 * c[i];
    double t2 = now();
    if (t2 - t1 < best_triad) best_triad = t2 - t1;
    sink += a[r];
  }
  printf("{\"threads\": %d, \"read_gb_s\": %.2f, \"triad_gb_s\": %.2f, \"sink\": %g}\n",
         omp_get_max_threads(), n * 8.0 / best_read / 1e9, n * 24.0 / best_triad / 1e9, sink);
  return 0;
}
