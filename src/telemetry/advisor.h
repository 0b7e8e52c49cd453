// Advisor: one line that names what bounds the server right now and the one lever most likely to
// raise its throughput, with the reason, derived from the live figures (WindowFigures).
//
//   "decode memory-bound at 3 running sequences with 40 waiting: raise --max-num-seqs (batch 3
//    does 2.9 FLOPs per byte, far below the ridge point 95: more sequences per step reuse each
//    weight byte almost for free)"
//
// Rules, first match wins (r running, w waiting, n = --max-num-seqs):
//   idle        no steps in the window and nobody waiting
//   kv          preemptions in the window, or KV usage >= 90% with w > 0: raise --kv-cache-memory
//   seqs        w > 0 and r >= n: compute-bound -> add replicas; else raise --max-num-seqs
//   tokens      w > 0 and steps carry >= 90% of --max-num-batched-tokens: raise it
//   queue       w > 0 otherwise: requests wait only for their prefill chunk; no change
//   overhead    no queue, the device waits on the host: send more concurrent requests
//   memory      no queue, below the ridge point: room for more traffic per replica
//   compute     no queue, above the ridge point: the device is full; scale out for more
// Pure function: no clock, no I/O.
#pragma once

#include <string>

#include "telemetry/telemetry.h"

namespace carpool::telemetry {

struct AdvisorLimits {
  int max_num_seqs = 0;            // the engine's --max-num-seqs
  int max_num_batched_tokens = 0;  // --max-num-batched-tokens
};

struct Advice {
  std::string state;  // "idle", "kv", "seqs", "tokens", "queue", "overhead", "memory", "compute"
  std::string bound;  // "overhead", "memory", "compute" or "" (idle, unknown)
  std::string lever;  // the flag or action: "--max-num-seqs", "replicas", ...; "" for none
  std::string text;   // the one line shown on the dashboard
};

Advice advise(const WindowFigures& figures, const AdvisorLimits& limits);

}  // namespace carpool::telemetry
