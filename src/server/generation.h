// A completions or chat request in flight: it submits one engine request per choice, turns each
// choice's tokens into text (StreamDecoder, then StopMatcher so that stop strings are cut and
// never partly sent), and answers either as an SSE stream (one chunk per token event, then usage
// when asked, then [DONE]) or as one JSON body when every choice has finished.
//
// Engine events arrive on the engine thread and are posted to the exchange's executor, where all
// of the job's state lives. A client that disconnects has its unfinished engine requests aborted
// (their KV blocks are freed within one engine step). A stop string aborts that choice's engine
// request as soon as it is seen.
//
// Completions with echo and logprobs ask the engine for the prompt's logprobs too; they arrive
// with each choice's first engine event, and a stream sends the echoed prompt with them as the
// choice's first chunk (so that chunk waits for the prompt to be computed).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/http_types.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/server_state.h"

namespace carpool::server {

struct GenerationInput {
  GenerationRequest request;
  std::vector<std::vector<int32_t>> prompts;  // tokenized, one per prompt (non-empty)
  std::vector<int> max_tokens;                // per prompt
  std::vector<std::string> echo;              // per prompt: text to prepend (completions echo)
  ResponseMeta meta;
};

// Starts the job; it keeps itself alive until every choice has finished. Call on the exchange's
// executor. `model` must outlive the job.
void start_generation(std::shared_ptr<Exchange> exchange, const ModelService& model,
                      GenerationInput input);

// "prefix-" and 24 random hex digits.
std::string make_request_id(const char* prefix);

}  // namespace carpool::server
