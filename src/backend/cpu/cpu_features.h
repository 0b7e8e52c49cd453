// Instruction-set levels of the host CPU, read once from CPUID (and XGETBV for the OS's support
// of the wide registers), for choosing kernels at run time.
//
// The environment variable CARPOOL_CPU_ISA (scalar, avx2, avx512 or amx) caps the level, so every
// path can be exercised on one machine. Thread-safe.
#pragma once

namespace carpool {

// Ordered: each level implies the ones below it.
enum class CpuIsa {
  kScalar = 0,  // portable C++
  kAvx2 = 1,    // AVX2 + FMA + F16C
  kAvx512 = 2,  // AVX2 level plus AVX-512 F/BW/VL and VNNI (8-bit dot products)
};

struct CpuFeatures {
  bool avx2 = false;    // with FMA and F16C
  bool avx512 = false;  // F, BW, VL
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool amx_int8 = false;  // AMX tiles with 8-bit products, enabled by the OS in XCR0
  bool amx_bf16 = false;
};

// What the processor and OS support (cached after the first call).
const CpuFeatures& cpu_features();

// The highest usable level, capped by CARPOOL_CPU_ISA when set (cached after the first call).
CpuIsa cpu_isa();

// True if this machine can run kernels of level `isa`.
bool cpu_supports(CpuIsa isa);

const char* cpu_isa_name(CpuIsa isa);

// True if the AMX-BF16 (AMX-INT8) tile kernels may run: the processor and OS support them, the
// level is AVX-512 (with AVX512_BF16 for BF16), CARPOOL_CPU_ISA does not cap it (unset or "amx";
// "avx512" turns AMX off), and Linux granted this process the tile data state (arch_prctl
// ARCH_REQ_XCOMP_PERM, asked once).
bool cpu_amx_bf16();
bool cpu_amx_int8();

// A space-separated list of the features found, e.g. "avx2 avx512 avx512_vnni".
const char* cpu_feature_string();

}  // namespace carpool
