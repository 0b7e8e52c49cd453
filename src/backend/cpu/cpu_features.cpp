#include "backend/cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CARPOOL_X86 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace carpool {
namespace {

#ifdef CARPOOL_X86
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef CARPOOL_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), f16c = c & (1u << 29);
  if (!osxsave) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = ymm_os && fma && f16c && (b & (1u << 5));
  f.avx512 = f.avx2 && zmm_os && (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));
  f.avx512_vnni = f.avx512 && (c & (1u << 11));
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  f.avx512_bf16 = f.avx512 && (a1 & (1u << 5));
  // AMX: CPUID.7.0 EDX bits 24 (tiles), 25 (int8), 22 (bf16); XCR0 bits 17, 18 (tile state).
  const bool tiles_os = (xcr0 & (3ull << 17)) == (3ull << 17);
  const bool tiles = f.avx512 && tiles_os && (d & (1u << 24));
  f.amx_int8 = tiles && (d & (1u << 25));
  f.amx_bf16 = tiles && (d & (1u << 22));
#endif
  return f;
}

CpuIsa detect_isa() {
  const CpuFeatures& f = cpu_features();
  CpuIsa isa = f.avx512 && f.avx512_vnni ? CpuIsa::kAvx512
               : f.avx2                  ? CpuIsa::kAvx2
                                         : CpuIsa::kScalar;
  if (const char* cap = std::getenv("CARPOOL_CPU_ISA")) {
    CpuIsa want = isa;
    if (std::strcmp(cap, "scalar") == 0) want = CpuIsa::kScalar;
    if (std::strcmp(cap, "avx2") == 0) want = CpuIsa::kAvx2;
    if (std::strcmp(cap, "avx512") == 0 || std::strcmp(cap, "amx") == 0) want = CpuIsa::kAvx512;
    if (static_cast<int>(want) < static_cast<int>(isa)) isa = want;
  }
  return isa;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

CpuIsa cpu_isa() {
  static const CpuIsa isa = detect_isa();
  return isa;
}

bool cpu_supports(CpuIsa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return f.avx2;
    case CpuIsa::kAvx512:
      return f.avx512 && f.avx512_vnni;
  }
  return false;
}

namespace {
// Linux's permission for this process to use the tile data state (asked once).
bool tile_permission() {
  static const bool ok = [] {
#if defined(__linux__) && defined(__x86_64__)
    constexpr long kReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kXtileData = 18;         // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#else
    return false;
#endif
  }();
  return ok;
}

bool amx_allowed() {
  if (cpu_isa() != CpuIsa::kAvx512) return false;
  const char* cap = std::getenv("CARPOOL_CPU_ISA");
  return cap == nullptr || std::strcmp(cap, "amx") == 0;
}
}  // namespace

bool cpu_amx_int8() {
  static const bool ok = cpu_features().amx_int8 && amx_allowed() && tile_permission();
  return ok;
}

bool cpu_amx_bf16() {
  static const bool ok =
      cpu_features().amx_bf16 && cpu_features().avx512_bf16 && amx_allowed() && tile_permission();
  return ok;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

const char* cpu_feature_string() {
  static const std::string s = [] {
    const CpuFeatures& f = cpu_features();
    std::string out;
    if (f.avx2) out += "avx2 fma f16c ";
    if (f.avx512) out += "avx512f avx512bw avx512vl ";
    if (f.avx512_vnni) out += "avx512_vnni ";
    if (f.avx512_bf16) out += "avx512_bf16 ";
    if (f.amx_int8) out += "amx_int8 ";
    if (f.amx_bf16) out += "amx_bf16 ";
    if (!out.empty()) out.pop_back();
    return out;
  }();
  return s.c_str();
}

}  // namespace carpool
