// RenderLimits: the sandbox budget of one template render. Every limit, when exceeded, ends the
// render with a clear error; none can crash or hang the process.
#pragma once

#include <cstddef>
#include <cstdint>

namespace carpool::chat {

struct RenderLimits {
  // Evaluation steps: one per statement, expression node and loop iteration, plus one per 64
  // bytes of string work. Bounds total CPU time.
  int64_t max_steps = 2'000'000;
  // Loop iterations summed over the whole render.
  int64_t max_loop_iterations = 200'000;
  // Nested macro calls.
  int max_recursion_depth = 64;
  // Bytes of rendered output; also the largest string or list (at kListItemBytes per item) any
  // single operation may build.
  size_t max_output_bytes = 8u << 20;
  // Bytes of strings and lists built by repetition, concatenation, split and range over the
  // whole render: bounds the memory a template can hold (a list of 8 million items was under the
  // per-operation limit when it counted items, and took 0.9 GB; fourteen of them 12 GB).
  size_t max_built_bytes = 256u << 20;
};

// What one list item costs against the limits above (a Value and its share of the vector).
inline constexpr size_t kListItemBytes = 64;

}  // namespace carpool::chat
