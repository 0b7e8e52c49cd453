// The inputs of telemetry: what the engine loop reports per step, what it reports per finished
// request, and the snapshot of its state the probe thread reads once a second.
#pragma once

#include <cstdint>
#include <string>

#include "telemetry/cost_model.h"

namespace carpool::telemetry {

// One engine step. Times are on the telemetry clock (Telemetry::clock()).
struct StepStats {
  int64_t start_ns = 0;   // the step began (before scheduling)
  int64_t end_ns = 0;     // the step's outputs were applied
  int64_t device_ns = 0;  // the device was busy with the step (CPU backend: forward time)
  // True when the loop slept waiting for work right before this step: the gap since the previous
  // step is then idle time, not host overhead.
  bool idle_before = false;
  StepShape shape;  // tokens, sequences and context by phase
  StepCost cost;    // compute_step_cost(cost_model, shape)
  // Tokens the step generated for its requests; -1: one per logit row. A request that only
  // scores its prompt (max_tokens 0) has a logit row whose token is dropped.
  int64_t generated_tokens = -1;
};

// One finished request (any finish reason). Latencies in seconds; negative: unknown (e.g. no
// first token for a request that failed in the queue).
struct RequestRecord {
  int64_t end_ns = 0;
  std::string finish_reason = "stop";  // "stop", "length", "abort", "error"
  double queue_s = -1;                 // arrival -> first scheduled
  double ttft_s = -1;                  // arrival -> first token
  double e2e_s = -1;                   // arrival -> final event
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
};

// The engine's state, read by the probe thread once a second through a callback.
struct EngineSnapshot {
  int running = 0;
  int waiting = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  double weights_bytes = 0;      // the model's weights on the device
  double kv_reserved_bytes = 0;  // the KV cache allocation
  double kv_used_bytes = 0;      // blocks in use × block bytes
  double workspace_bytes = 0;    // activations and scratch
  int engine_tid = 0;            // the engine loop thread (gettid()); 0: unknown
  int64_t preemptions = -1;      // cumulative preemptions since start; -1: not reported
};

}  // namespace carpool::telemetry
