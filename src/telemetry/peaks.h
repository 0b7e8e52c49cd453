// Peaks: the ceilings MFU and MBU divide by, and where each came from.
//
// Sources, in the order carpool prefers them:
//   "measured"  a calibration on this machine (CPU: the faster of a read-only pass and a
//               STREAM-like triad over huge-page arrays, and a matmul through the backend), cached
//               in <cache dir>/peaks.json so it runs once per machine
//   "catalog"   the datasheet figure of the GPU catalog (data/gpus.json, user-editable)
//   "none"      unknown: MFU/MBU are then unavailable
// Cache dir: $CARPOOL_CACHE, else $XDG_CACHE_HOME/carpool, else $HOME/.cache/carpool.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "util/status.h"

namespace carpool::telemetry {

struct Peaks {
  std::string device;                     // "NVIDIA H200", "AMD EPYC 9B14 (2 threads)"
  double bandwidth_bytes_per_s = 0;       // 0: unknown
  double flops_per_s = 0;                 // 0: unknown
  std::string bandwidth_source = "none";  // "measured", "catalog", "none"
  std::string flops_source = "none";
  // Peak FLOP/s ÷ peak bytes/s: the arithmetic intensity above which a step is compute-bound.
  std::optional<double> ridge_flops_per_byte() const;
};

struct GpuCatalogEntry {
  std::string name;
  std::vector<std::string> match;  // substrings of the NVML device name
  double memory_bytes = 0;
  double bandwidth_bytes_per_s = 0;
  double bf16_flops_per_s = 0;
  std::optional<double> fp8_flops_per_s;
  std::optional<double> price_per_hour;
};

// Parses the catalog JSON (untrusted: a user edits it). Errors name the entry and field.
Result<std::vector<GpuCatalogEntry>> parse_gpu_catalog(std::string_view json_text);
Result<std::vector<GpuCatalogEntry>> load_gpu_catalog(const std::string& path);
// The entry whose longest `match` substring occurs in `device_name`; nullopt if none.
std::optional<GpuCatalogEntry> match_gpu(const std::vector<GpuCatalogEntry>& catalog,
                                         std::string_view device_name);
// Peaks from a catalog entry (bf16 compute), source "catalog".
Peaks peaks_from_catalog(const GpuCatalogEntry& e, std::string device_name);

// The per-user cache directory (see above); empty when none can be found.
std::string cache_dir();

struct CalibrationOptions {
  int threads = 0;                // bandwidth threads; 0: hardware threads
  size_t triad_bytes = 3u << 26;  // 192 MiB in all (beyond any cache): the read pass's one array,
                                  // the triad's three
  int repeats = 5;                // best of
  int matmul_rows = 256;          // x [rows, k] · w[n, k]^T
  int matmul_k = 2048;
  int matmul_n = 2048;
  DType matmul_dtype = DType::kF32;
  // A calibration during which other work took more than this share of the machine's CPU time
  // (other processes, or the hypervisor's other guests: cpu_probe.h) measured the machine's
  // leftovers, not its peaks: it is used for the run that measured it but not cached, so the
  // next start measures again. (During a build on both cores the read pass of a 2-core VM
  // measured 14.6 GB/s where the quiet machine reads 24.3.)
  double max_others_share = 0.15;
};

// Bytes/s of a read-only pass (a sum over one array, as a decode step reads its weights) and of a
// triad a = b + s·c (2 reads + 1 write per element), each the best of `repeats`. Arrays come from
// host_alloc, so they are paged as the engine's weights and KV are (transparent huge pages where
// the kernel allows): on 4 KiB pages the same loop measured 23-28 GB/s where decode reached 32.
double measure_read_bandwidth(const CalibrationOptions& options);
double measure_triad_bandwidth(const CalibrationOptions& options);
// FLOP/s of backend.matmul at the given shape (2·rows·k·n per call; the best of `repeats`).
Result<double> measure_matmul_flops(Backend& backend, const CalibrationOptions& options);

struct CpuCalibration {
  Peaks peaks;
  bool from_cache = false;  // read from the cache file: nothing was measured
  double seconds = 0;       // how long measuring took
  // The share of the machine's CPU time that other work took while measuring (nullopt: /proc
  // unreadable, taken as quiet).
  std::optional<double> others_share;
  bool disturbed = false;  // others_share above CalibrationOptions::max_others_share: not saved
  bool saved = false;      // written to the cache
};

// Peaks for `key` (a device name; include the thread count on CPU) from the cache file, or
// calibrated with the functions above and saved there unless other work disturbed the
// measurement (CalibrationOptions::max_others_share). `backend`: runs the matmul. Cache errors
// (unreadable, malformed) fall back to calibrating; a write failure is ignored.
Result<CpuCalibration> cpu_peaks_cached(Backend& backend, const std::string& key,
                                        const std::string& cache_path,
                                        const CalibrationOptions& options);
// One line for the log: the peaks, where they came from, and a warning when they were measured
// beside other work (not cached).
std::string describe_cpu_calibration(const CpuCalibration& c, const std::string& cache_path);

// The version of the CPU kernels and calibration a cached entry was measured with. Bump it when a
// change makes the matmul kernels faster or the calibration measure higher: an entry of another
// version (or none) is measured again, so a speed-up never shows as an MFU (or MBU) above 1 on
// machines that calibrated before it.
//   2: packed weights (one VNNI instruction per 16 output columns).
//   3: bandwidth = the faster of a read pass and the triad, on huge pages.
//   4: the FLOP peak includes the BF16 matmul (AMX tiles where the CPU has them).
//   5: and a 4-bit matmul (Q4_0): the AVX2 kernels' 16-bit runs made 4-bit weights faster than
//      8-bit ones (a Zen 1 EPYC: Q4_1 at batch 16 ran 70 GFLOP/s against a 51 GFLOP/s peak).
inline constexpr int kPeaksCacheVersion = 5;

// Serialization of the cache file:
//   {"<key>": {"bandwidth_bytes_per_s":..,"flops_per_s":..,"kernels": kPeaksCacheVersion}}.
// Reading ignores an entry of another kernels version.
std::optional<Peaks> read_cached_peaks(std::string_view json_text, const std::string& key);
std::string write_cached_peaks(std::string_view old_json_text, const Peaks& peaks);

}  // namespace carpool::telemetry
