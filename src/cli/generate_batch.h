// carpool generate with several prompts: they run together through the engine (continuous
// batching on the paged KV cache), as a server would batch them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/load.h"
#include "engine/generator.h"

namespace carpool::cli {

// Parses "--prompt-ids" text: prompts separated by ';', each a comma-separated list of token
// ids below `vocab_size`. Errors name the offending item.
Result<std::vector<std::vector<int32_t>>> parse_prompt_ids(const std::string& text,
                                                           int64_t vocab_size);

// Runs `prompts` together through an Engine on `lm`'s model with `opt`'s sampling, max_tokens and
// stop ids (ignore_eos: none), and returns each prompt's generated token ids in prompt order.
Result<std::vector<std::vector<int32_t>>> generate_batch(
    LoadedModel& lm, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& opt,
    bool ignore_eos);

}  // namespace carpool::cli
