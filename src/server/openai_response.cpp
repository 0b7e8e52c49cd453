#include "server/openai_response.h"

#include "server/json_io.h"
#include "tokenizer/tokenizer.h"
#include "util/utf8.h"

namespace carpool::server {

using nlohmann::ordered_json;

namespace {

ordered_json header(const ResponseMeta& meta, bool chunk) {
  ordered_json j;
  j["id"] = meta.id;
  j["object"] =
      meta.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  j["created"] = meta.created;
  j["model"] = meta.model;
  return j;
}

ordered_json byte_list(std::string_view s) {
  ordered_json a = ordered_json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

}  // namespace

ordered_json usage_json(const Usage& u) {
  ordered_json j;
  j["prompt_tokens"] = u.prompt_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached_tokens}};  // as OpenAI's API
  return j;
}

size_t token_text_chars(const Tokenizer& tok, const TokenLogprobs& lp, size_t i) {
  if (lp.text_skips_special && tok.is_special(lp.tokens[i])) return 0;
  return utf8_length(tok.token_to_piece(lp.tokens[i]));  // characters, as OpenAI and vLLM count
}

ordered_json logprobs_json(bool chat, const Tokenizer& tok, const TokenLogprobs& lp,
                           size_t text_offset) {
  if (chat) {
    ordered_json content = ordered_json::array();
    for (size_t i = 0; i < lp.tokens.size(); ++i) {
      std::string_view piece = tok.token_to_piece(lp.tokens[i]);
      ordered_json e;
      e["token"] = std::string(piece);
      e["logprob"] = lp.logprobs[i];
      e["bytes"] = byte_list(piece);
      ordered_json tops = ordered_json::array();
      if (i < lp.top.size()) {
        for (const auto& [id, l] : lp.top[i]) {
          std::string_view p = tok.token_to_piece(id);
          ordered_json t;
          t["token"] = std::string(p);
          t["logprob"] = l;
          t["bytes"] = byte_list(p);
          tops.push_back(std::move(t));
        }
      }
      e["top_logprobs"] = std::move(tops);
      content.push_back(std::move(e));
    }
    ordered_json j;
    j["content"] = std::move(content);
    j["refusal"] = nullptr;  // required (nullable) in OpenAI's schema
    return j;
  }
  ordered_json tokens = ordered_json::array(), lps = ordered_json::array(),
               tops = ordered_json::array(), offsets = ordered_json::array();
  size_t offset = text_offset;
  for (size_t i = 0; i < lp.tokens.size(); ++i) {
    std::string_view piece = tok.token_to_piece(lp.tokens[i]);
    tokens.push_back(std::string(piece));
    if (i < lp.num_unscored) {
      lps.push_back(nullptr);
      tops.push_back(nullptr);
    } else {
      lps.push_back(lp.logprobs[i]);
      // The top k, plus the token itself where it is not among them (OpenAI: "up to logprobs + 1
      // elements"; logprobs 0 gives the chosen token alone).
      ordered_json top = ordered_json::object();
      if (i < lp.top.size()) {
        for (const auto& [id, l] : lp.top[i]) top[std::string(tok.token_to_piece(id))] = l;
      }
      if (!top.contains(std::string(piece))) top[std::string(piece)] = lp.logprobs[i];
      tops.push_back(std::move(top));
    }
    offsets.push_back(offset);
    offset += token_text_chars(tok, lp, i);
  }
  ordered_json j;
  j["tokens"] = std::move(tokens);
  j["token_logprobs"] = std::move(lps);
  j["top_logprobs"] = std::move(tops);
  j["text_offset"] = std::move(offsets);
  return j;
}

ordered_json echo_logprobs_json(const Tokenizer& tok, const TokenLogprobs& prompt,
                                const TokenLogprobs& generated, size_t generated_offset) {
  ordered_json j = logprobs_json(false, tok, prompt, 0);
  ordered_json more = logprobs_json(false, tok, generated, generated_offset);
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
    for (auto& v : more[key]) j[key].push_back(std::move(v));
  }
  return j;
}

std::string full_response(const ResponseMeta& meta, const Tokenizer& tok,
                          const std::vector<ChoiceResult>& choices, const Usage& usage) {
  ordered_json j = header(meta, false);
  ordered_json arr = ordered_json::array();
  for (const auto& c : choices) {
    ordered_json e;
    e["index"] = c.index;
    if (meta.chat) {
      ordered_json msg;
      msg["role"] = "assistant";
      if (c.tool_answer) {
        msg["content"] = c.tool.content ? ordered_json(*c.tool.content) : ordered_json(nullptr);
      } else {
        msg["content"] = c.text;
      }
      msg["refusal"] = nullptr;  // required (nullable) in OpenAI's schema
      if (c.tool_answer && !c.tool.calls.empty()) {
        ordered_json calls = ordered_json::array();
        for (const ToolCall& call : c.tool.calls) calls.push_back(tool_call_json(call));
        msg["tool_calls"] = std::move(calls);
      }
      e["message"] = std::move(msg);
    } else {
      e["text"] = c.text;
    }
    if (c.with_prompt_logprobs && !meta.chat) {
      e["logprobs"] = echo_logprobs_json(tok, c.prompt_logprobs, c.logprobs, c.text_offset);
    } else if (c.with_logprobs) {
      e["logprobs"] = logprobs_json(meta.chat, tok, c.logprobs, c.text_offset);
    } else {
      e["logprobs"] = nullptr;
    }
    e["finish_reason"] = c.finish_reason;
    arr.push_back(std::move(e));
  }
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return dump_json(j);
}

std::string sse_event(const std::string& json) {
  return "data: " + json + "\n\n";
}

ordered_json tool_call_json(const ToolCall& call, int index) {
  ordered_json j;
  if (index >= 0) j["index"] = index;
  j["id"] = call.id;
  j["type"] = "function";
  j["function"] = {{"name", call.name}, {"arguments", call.arguments}};
  return j;
}

std::string chunk_event(const ResponseMeta& meta, int index, const std::string& delta_text,
                        bool role, const ordered_json& logprobs, const char* finish_reason,
                        bool usage_null, const ordered_json* tool_calls) {
  ordered_json j = header(meta, true);
  ordered_json c;
  c["index"] = index;
  if (meta.chat) {
    ordered_json delta = ordered_json::object();
    if (role) delta["role"] = "assistant";
    if (role || !delta_text.empty()) delta["content"] = delta_text;
    if (tool_calls != nullptr) delta["tool_calls"] = *tool_calls;
    c["delta"] = std::move(delta);
  } else {
    c["text"] = delta_text;
  }
  c["logprobs"] = logprobs;
  c["finish_reason"] = finish_reason ? ordered_json(finish_reason) : ordered_json(nullptr);
  j["choices"] = ordered_json::array({std::move(c)});
  if (usage_null) j["usage"] = nullptr;
  return sse_event(dump_json(j));
}

std::string usage_event(const ResponseMeta& meta, const Usage& usage) {
  ordered_json j = header(meta, true);
  j["choices"] = ordered_json::array();
  j["usage"] = usage_json(usage);
  return sse_event(dump_json(j));
}

}  // namespace carpool::server
