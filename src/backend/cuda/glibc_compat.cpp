// Portable builds only (CARPOOL_GLIBC_COMPAT, set by scripts/build-gpu): binaries for the GPU
// machine link libstdc++ statically, and the libstdc++ built against glibc 2.36 makes
// std::random_device call arc4random, a glibc 2.36 symbol, which an older glibc lacks. Defining
// it here (from getrandom, glibc 2.25) keeps the binaries runnable on glibc 2.35.
#ifdef CARPOOL_GLIBC_COMPAT
#include <sys/random.h>

#include <cstdint>

extern "C" uint32_t arc4random(void) noexcept {
  uint32_t v = 0;
  while (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
  }
  return v;
}
#endif
