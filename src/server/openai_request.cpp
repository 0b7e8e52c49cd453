#include "server/openai_request.h"

#include <cmath>
#include <initializer_list>
#include <limits>

#include "server/json_io.h"
#include "server/json_schema_compile.h"

namespace carpool::server {
namespace {

using nlohmann::json;

// A field reader: null counts as absent; wrong types and out-of-range values name the field.
class Fields {
 public:
  explicit Fields(const json& body) : body_(body) {}

  const json* find(const char* name) const {
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<ApiError> number(const char* name, double lo, double hi, float* out) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) return bad_request(std::string(name) + " must be a number", name);
    double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi) {
      return bad_request(
          std::string(name) + " must be in [" + fmt(lo) + ", " + fmt(hi) + "], got " + fmt(d),
          name);
    }
    *out = static_cast<float>(d);
    return std::nullopt;
  }

  std::optional<ApiError> integer(const char* name, int64_t lo, int64_t hi, int64_t* out) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (v->is_number_float()) {  // 2.0 is the integer 2 (Python clients send floats they computed)
      const double d = v->get<double>();
      // Whole and within int64 (2^63 itself is not) before it is converted.
      const bool whole =
          d == std::floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0;
      const int64_t x = whole ? static_cast<int64_t>(d) : 0;
      if (!whole || x < lo || x > hi) {
        return bad_request(std::string(name) + " must be an integer in [" + std::to_string(lo) +
                               ", " + std::to_string(hi) + "], got " + fmt(d),
                           name);
      }
      *out = x;
      return std::nullopt;
    }
    if (!v->is_number_integer())
      return bad_request(std::string(name) + " must be an integer", name);
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return bad_request(std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]",
                         name);
    }
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) {
      return bad_request(std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "], got " + std::to_string(x),
                         name);
    }
    *out = x;
    return std::nullopt;
  }

  std::optional<ApiError> boolean(const char* name, bool* out) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) return bad_request(std::string(name) + " must be a boolean", name);
    *out = v->get<bool>();
    return std::nullopt;
  }

  std::optional<ApiError> string(const char* name, std::string* out) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) return bad_request(std::string(name) + " must be a string", name);
    *out = v->get<std::string>();
    return std::nullopt;
  }

  static std::string fmt(double d) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", d);
    return buf;
  }

 private:
  const json& body_;
};

std::optional<ApiError> parse_token_ids(const json& arr, const RequestLimits& limits,
                                        const std::string& param, std::vector<int32_t>* out) {
  out->clear();
  out->reserve(arr.size());
  for (const auto& t : arr) {
    if (!t.is_number_integer()) return bad_request(param + " must hold integer token ids", param);
    int64_t id = -1;
    if (!t.is_number_unsigned() ||
        t.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      id = t.get<int64_t>();
    }
    if (id < 0 || id >= limits.vocab_size) {
      return bad_request(
          param + " holds a token id outside [0, " + std::to_string(limits.vocab_size) + ")",
          param);
    }
    out->push_back(static_cast<int32_t>(id));
  }
  if (out->empty()) return bad_request(param + " must not be empty", param);
  return std::nullopt;
}

std::optional<ApiError> parse_prompt(const json& body, const RequestLimits& limits,
                                     std::vector<PromptInput>* out) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return bad_request("prompt is required", "prompt");
  const json& p = *it;
  auto one_text = [&](const json& s) {
    PromptInput in;
    in.text = s.get<std::string>();
    out->push_back(std::move(in));
  };
  if (p.is_string()) {
    one_text(p);
  } else if (p.is_array()) {
    if (p.empty()) return bad_request("prompt must not be empty", "prompt");
    if (p[0].is_number()) {
      PromptInput in;
      in.is_ids = true;
      CARPOOL_API_TRY(parse_token_ids(p, limits, "prompt", &in.ids));
      out->push_back(std::move(in));
    } else {
      if (p.size() > static_cast<size_t>(limits.max_prompts)) {
        return bad_request("prompt holds " + std::to_string(p.size()) + " prompts; at most " +
                               std::to_string(limits.max_prompts) + " are allowed",
                           "prompt");
      }
      for (const auto& e : p) {
        if (e.is_string()) {
          one_text(e);
        } else if (e.is_array()) {
          PromptInput in;
          in.is_ids = true;
          CARPOOL_API_TRY(parse_token_ids(e, limits, "prompt", &in.ids));
          out->push_back(std::move(in));
        } else {
          return bad_request(
              "prompt must be a string, a list of token ids, or a list of strings or token lists",
              "prompt");
        }
      }
    }
  } else {
    return bad_request(
        "prompt must be a string, a list of token ids, or a list of strings or token lists",
        "prompt");
  }
  for (const auto& in : *out) {
    if (!in.is_ids && in.text.empty()) return bad_request("prompt must not be empty", "prompt");
  }
  return std::nullopt;
}

std::optional<ApiError> parse_stop(const json& body, const RequestLimits& limits,
                                   std::vector<std::string>* out) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return std::nullopt;
  auto add = [&](const json& s) -> std::optional<ApiError> {
    if (!s.is_string()) return bad_request("stop must be a string or a list of strings", "stop");
    std::string v = s.get<std::string>();
    if (v.empty()) return bad_request("stop strings must not be empty", "stop");
    if (v.size() > limits.max_stop_bytes) {
      return bad_request(
          "stop strings are limited to " + std::to_string(limits.max_stop_bytes) + " bytes",
          "stop");
    }
    out->push_back(std::move(v));
    return std::nullopt;
  };
  if (it->is_array()) {
    if (it->size() > static_cast<size_t>(limits.max_stop)) {
      return bad_request("at most " + std::to_string(limits.max_stop) + " stop strings are allowed",
                         "stop");
    }
    for (const auto& s : *it) CARPOOL_API_TRY(add(s));
    return std::nullopt;
  }
  return add(*it);
}

// logit_bias: {"token id": bias in [-100, 100]}, as OpenAI's API.
std::optional<ApiError> parse_logit_bias(const json& body, const RequestLimits& limits,
                                         SamplingParams* s) {
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return bad_request("logit_bias must be an object", "logit_bias");
  if (it->size() > static_cast<size_t>(limits.max_logit_bias)) {
    return bad_request(
        "logit_bias holds more than " + std::to_string(limits.max_logit_bias) + " entries",
        "logit_bias");
  }
  for (const auto& [key, value] : it->items()) {
    int64_t id = -1;
    if (!key.empty() && key.size() <= 10 &&
        key.find_first_not_of("0123456789") == std::string::npos) {
      id = std::stoll(key);
    }
    if (id < 0 || id >= limits.vocab_size) {
      return bad_request("logit_bias keys must be token ids in [0, " +
                             std::to_string(limits.vocab_size) + "), got '" + key + "'",
                         "logit_bias");
    }
    if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100)) {
      return bad_request("logit_bias values must be numbers in [-100, 100]", "logit_bias");
    }
    s->logit_bias.emplace_back(static_cast<int32_t>(id), value.get<float>());
  }
  return std::nullopt;
}

// The schema at `path` in the body (nlohmann::json sorts members), in its declared member order
// (the properties are written in that order): from the raw body where there is one.
nlohmann::ordered_json declared_order(const json& value, std::string_view raw_body,
                                      std::initializer_list<const char*> path) {
  if (!raw_body.empty()) {
    nlohmann::ordered_json at = nlohmann::ordered_json::parse(raw_body, nullptr, false);
    for (const char* key : path) {
      if (!at.is_object() || !at.contains(key)) {
        at = nullptr;
        break;
      }
      at = nlohmann::ordered_json(at[key]);
    }
    if (!at.is_null() && !at.is_discarded()) return at;
  }
  return nlohmann::ordered_json::parse(value.dump());
}

// Compiles `schema` for JSON mode (json_schema_compile.h); errors name `param`.
std::optional<ApiError> compile_schema_field(const nlohmann::ordered_json& schema,
                                             const char* param, GenerationRequest* r) {
  auto compiled = compile_json_schema(schema);
  if (!compiled) return bad_request(compiled.error(), param);
  r->json_object = true;
  r->json_schema = std::move(compiled).value();
  return std::nullopt;
}

// response_format: "text" (the default), "json_object" (JSON mode) or "json_schema" (JSON mode
// with a schema, json_schema_compile.h; a schema the engine cannot enforce is refused).
std::optional<ApiError> parse_response_format(const json& body, std::string_view raw_body,
                                              GenerationRequest* r) {
  auto it = body.find("response_format");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return bad_request("response_format must be an object", "response_format");
  auto type = it->find("type");
  if (type == it->end() || !type->is_string()) {
    return bad_request("response_format.type must be a string", "response_format.type");
  }
  const std::string t = type->get<std::string>();
  if (t == "text") return std::nullopt;
  if (t != "json_object" && t != "json_schema") {
    return bad_request(
        "response_format.type must be text, json_object or json_schema, got '" + t + "'",
        "response_format.type");
  }
  if (r->ignore_eos) {
    return bad_request("ignore_eos cannot be combined with response_format " + t, "ignore_eos");
  }
  r->json_object = true;
  if (t == "json_schema") {
    auto js = it->find("json_schema");
    if (js == it->end() || !js->is_object() || !js->contains("schema")) {
      return bad_request("response_format.json_schema must be an object with a schema",
                         "response_format.json_schema");
    }
    return compile_schema_field(
        declared_order((*js)["schema"], raw_body, {"response_format", "json_schema", "schema"}),
        "response_format.json_schema", r);
  }
  return std::nullopt;
}

// vLLM's request extensions: honoured (stop_token_ids, include_stop_str_in_output, guided_json)
// or, where they would change the answer and are not implemented, refused; null or the default
// value counts as absent.
std::optional<ApiError> parse_vllm_extensions(const json& body, std::string_view raw_body,
                                              const RequestLimits& limits, GenerationRequest* r) {
  Fields f(body);
  if (const json* v = f.find("stop_token_ids")) {
    if (!v->is_array()) {
      return bad_request("stop_token_ids must be a list of token ids", "stop_token_ids");
    }
    if (v->size() > static_cast<size_t>(limits.max_stop)) {
      return bad_request("at most " + std::to_string(limits.max_stop) + " stop_token_ids",
                         "stop_token_ids");
    }
    if (!v->empty())
      CARPOOL_API_TRY(parse_token_ids(*v, limits, "stop_token_ids", &r->stop_token_ids));
  }
  CARPOOL_API_TRY(f.boolean("include_stop_str_in_output", &r->include_stop_str_in_output));
  CARPOOL_API_TRY(f.boolean("skip_special_tokens", &r->skip_special_tokens));
  if (const json* v = f.find("guided_json")) {
    if (r->json_object) {
      return bad_request("guided_json cannot be combined with response_format", "guided_json");
    }
    if (r->ignore_eos)
      return bad_request("ignore_eos cannot be combined with guided_json", "ignore_eos");
    nlohmann::ordered_json schema;
    if (v->is_string()) {
      // Bounded as a body is: the schema compiler walks the value recursively.
      CARPOOL_API_TRY(parse_json_text(v->get<std::string>(), "guided_json", &schema));
    } else if (v->is_object()) {
      schema = declared_order(*v, raw_body, {"guided_json"});
    } else {
      return bad_request("guided_json must be a JSON schema (an object or a string)",
                         "guided_json");
    }
    CARPOOL_API_TRY(compile_schema_field(schema, "guided_json", r));
  }
  struct Refused {
    const char* name;
    const char* why;
  };
  static constexpr Refused kRefused[] = {
      {"guided_choice", "guided_choice is not supported (response_format json_schema is)"},
      {"guided_regex", "guided_regex is not supported (response_format json_schema is)"},
      {"guided_grammar", "guided_grammar is not supported (response_format json_schema is)"},
      {"structured_outputs",
       "structured_outputs is not supported (response_format json_schema is)"},
      {"prompt_logprobs",
       "prompt_logprobs is not supported (completions with echo and logprobs score the prompt)"},
      {"bad_words", "bad_words is not supported (logit_bias is)"},
      {"allowed_token_ids", "allowed_token_ids is not supported (logit_bias is)"},
      {"logits_processors", "logits_processors is not supported"},
      {"truncate_prompt_tokens", "truncate_prompt_tokens is not supported"},
      {"chat_template",
       "a chat template in the request is not supported (the server's is used: the model's, or "
       "carpool serve --chat-template's)"},
  };
  for (const Refused& x : kRefused) {
    const json* v = f.find(x.name);
    if (v && !(v->is_array() && v->empty()) && !(v->is_object() && v->empty())) {
      return bad_request(x.why, x.name);
    }
  }
  int64_t min_tokens = 0;
  CARPOOL_API_TRY(f.integer("min_tokens", 0, 1 << 24, &min_tokens));
  if (min_tokens > 0 && r->json_object) {
    // The object's end would need the end-of-generation token it bans.
    return bad_request("min_tokens cannot be combined with JSON mode", "min_tokens");
  }
  r->min_tokens = static_cast<int>(min_tokens);
  for (const char* name :
       {"use_beam_search", "return_tokens_as_token_ids", "continue_final_message"}) {
    bool on = false;
    CARPOOL_API_TRY(f.boolean(name, &on));
    if (on) return bad_request(std::string(name) + " is not supported", name);
  }
  return std::nullopt;
}

// The fields both endpoints share.
std::optional<ApiError> parse_common(const json& body, std::string_view raw_body,
                                     const RequestLimits& limits, GenerationRequest* r) {
  Fields f(body);
  CARPOOL_API_TRY(f.string("model", &r->model));
  CARPOOL_API_TRY(f.string("user", &r->user));
  SamplingParams& s = r->sampling;
  s.temperature = 1.f;
  CARPOOL_API_TRY(f.number("temperature", 0, 2, &s.temperature));
  if (const json* v = f.find("top_p")) {  // checked as given: 1e-300 is positive, 0 as a float
    if (!v->is_number()) return bad_request("top_p must be a number", "top_p");
    const double p = v->get<double>();
    if (!(p > 0 && p <= 1)) {
      return bad_request("top_p must be in (0, 1], got " + Fields::fmt(p), "top_p");
    }
    s.top_p = std::max(static_cast<float>(p), std::numeric_limits<float>::min());
  }
  int64_t top_k = 0;
  CARPOOL_API_TRY(f.integer("top_k", -1, 1 << 20, &top_k));
  s.top_k = static_cast<int>(top_k);
  CARPOOL_API_TRY(f.number("min_p", 0, 1, &s.min_p));
  CARPOOL_API_TRY(f.number("presence_penalty", -2, 2, &s.presence_penalty));
  CARPOOL_API_TRY(f.number("frequency_penalty", -2, 2, &s.frequency_penalty));
  CARPOOL_API_TRY(f.number("repetition_penalty", 0, 2, &s.repetition_penalty));
  if (f.find("repetition_penalty") && s.repetition_penalty <= 0) {
    return bad_request("repetition_penalty must be in (0, 2]", "repetition_penalty");
  }
  int64_t seed = -1;
  CARPOOL_API_TRY(f.integer("seed", 0, std::numeric_limits<int64_t>::max(), &seed));
  s.seed = seed;
  int64_t n = 1;
  CARPOOL_API_TRY(f.integer("n", 1, limits.max_n, &n));
  r->n = static_cast<int>(n);
  CARPOOL_API_TRY(parse_stop(body, limits, &r->stop));
  CARPOOL_API_TRY(f.boolean("stream", &r->stream));
  CARPOOL_API_TRY(f.boolean("ignore_eos", &r->ignore_eos));
  if (const json* so = f.find("stream_options")) {
    if (!so->is_object()) return bad_request("stream_options must be an object", "stream_options");
    if (!r->stream) {
      return bad_request("stream_options is only allowed when stream is true", "stream_options");
    }
    auto iu = so->find("include_usage");
    if (iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) {
        return bad_request("stream_options.include_usage must be a boolean",
                           "stream_options.include_usage");
      }
      r->include_usage = iu->get<bool>();
    }
  }
  CARPOOL_API_TRY(parse_response_format(body, raw_body, r));
  CARPOOL_API_TRY(parse_vllm_extensions(body, raw_body, limits, r));
  CARPOOL_API_TRY(parse_logit_bias(body, limits, &s));
  if (Status st = s.validate(); !st) return bad_request(st.message());
  return std::nullopt;
}

// min_tokens within max_tokens, where max_tokens is given.
std::optional<ApiError> check_min_tokens(const GenerationRequest& r) {
  if (!r.max_tokens || r.min_tokens <= *r.max_tokens) return std::nullopt;
  return bad_request("min_tokens (" + std::to_string(r.min_tokens) + ") exceeds max_tokens (" +
                         std::to_string(*r.max_tokens) + ")",
                     "min_tokens");
}

// min 0: completions, where echo with max_tokens 0 scores the prompt and generates nothing.
std::optional<ApiError> parse_max_tokens(const Fields& f, const char* name, int64_t min,
                                         GenerationRequest* r) {
  int64_t mt = -1;
  CARPOOL_API_TRY(f.integer(name, min, 1 << 24, &mt));
  if (mt >= 0) r->max_tokens = static_cast<int>(mt);
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_template_kwargs(const json& body, nlohmann::ordered_json* out) {
  *out = nlohmann::ordered_json::object();
  auto v = body.find("chat_template_kwargs");
  if (v == body.end() || v->is_null()) return std::nullopt;
  if (!v->is_object()) {
    return bad_request("chat_template_kwargs must be an object", "chat_template_kwargs");
  }
  // Tools go through the request's own fields, where the answer is read for calls.
  for (const char* name : {"tools", "functions", "documents"}) {
    if (v->contains(name) && !(*v)[name].is_null() &&
        !((*v)[name].is_array() && (*v)[name].empty())) {
      return bad_request(std::string("chat_template_kwargs.") + name + " is not supported",
                         "chat_template_kwargs");
    }
  }
  *out = nlohmann::ordered_json::parse(v->dump());
  return std::nullopt;
}

std::optional<ApiError> parse_completion_request(const json& body, const RequestLimits& limits,
                                                 GenerationRequest* r, std::string_view raw_body) {
  *r = GenerationRequest{};
  CARPOOL_API_TRY(parse_common(body, raw_body, limits, r));
  CARPOOL_API_TRY(parse_prompt(body, limits, &r->prompts));
  Fields f(body);
  CARPOOL_API_TRY(f.boolean("echo", &r->echo));
  // Refused rather than ignored: an answer that silently drops them reads as a wrong answer.
  if (const json* v = f.find("suffix"); v && !(v->is_string() && v->get<std::string>().empty())) {
    return bad_request("suffix is not supported (no fill-in-the-middle)", "suffix");
  }
  int64_t best_of = r->n;
  if (f.find("best_of") && (f.integer("best_of", 1, 1 << 20, &best_of) || best_of != r->n)) {
    return bad_request(
        "best_of other than n is not supported (ask for n choices with logprobs and rank them)",
        "best_of");
  }
  // With echo, max_tokens 0 returns the prompt alone (with its logprobs: scoring), as in
  // OpenAI's legacy API and vLLM.
  CARPOOL_API_TRY(parse_max_tokens(f, "max_tokens", 0, r));
  if (r->max_tokens == 0 && !r->echo) {
    return bad_request("max_tokens must be at least 1 (0 is allowed only with echo)", "max_tokens");
  }
  if (!r->max_tokens) r->max_tokens = 16;
  CARPOOL_API_TRY(check_min_tokens(*r));
  int64_t lp = -1;
  CARPOOL_API_TRY(f.integer("logprobs", 0, limits.max_logprobs, &lp));
  r->logprobs = static_cast<int>(lp);
  const size_t choices = r->prompts.size() * static_cast<size_t>(r->n);
  if (choices > static_cast<size_t>(limits.max_choices)) {
    return bad_request("prompts x n = " + std::to_string(choices) + " exceeds " +
                           std::to_string(limits.max_choices),
                       "n");
  }
  return std::nullopt;
}

std::optional<ApiError> parse_chat_request(const json& body, const RequestLimits& limits,
                                           GenerationRequest* r, std::string_view raw_body) {
  *r = GenerationRequest{};
  r->chat = true;
  CARPOOL_API_TRY(parse_common(body, raw_body, limits, r));
  auto msgs = body.find("messages");
  if (msgs == body.end() || msgs->is_null()) return bad_request("messages is required", "messages");
  CARPOOL_API_TRY(parse_messages(*msgs, limits, &r->messages));
  // The legacy functions / function_call (deprecated by OpenAI for tools): refused rather than
  // ignored, unless function_call is "none".
  {
    auto fns = body.find("functions");
    const bool given = fns != body.end() && !fns->is_null() && !(fns->is_array() && fns->empty());
    auto choice = body.find("function_call");
    const bool none = choice != body.end() && choice->is_string() && *choice == "none";
    const bool absent =
        choice == body.end() || choice->is_null() || (choice->is_string() && *choice == "auto");
    if (given && !none) {
      return bad_request("functions are not supported (the legacy form); use tools", "functions");
    }
    if (!given && !none && !absent)
      return bad_request("function_call needs functions", "function_call");
  }
  std::shared_ptr<const JsonSchema> tool_schema;
  CARPOOL_API_TRY(parse_tool_request(body, raw_body, ToolLimits{}, &r->tools, &tool_schema));
  if (r->tools.constrained()) {
    const char* choice = "tool_choice";
    if (r->json_object) {
      return bad_request(
          "tool_choice required or a named function cannot be combined with "
          "response_format or guided_json",
          choice);
    }
    if (r->ignore_eos)
      return bad_request(
          "ignore_eos cannot be combined with tool_choice " +
              std::string(r->tools.choice == ToolChoice::kNamed ? "naming a function" : "required"),
          "ignore_eos");
    if (r->min_tokens > 0) {
      return bad_request(
          "min_tokens cannot be combined with tool_choice required or a named "
          "function",
          "min_tokens");
    }
    r->json_object = true;  // the calls are written in JSON mode, with their schema
    r->json_schema = std::move(tool_schema);
  }
  Fields f(body);
  CARPOOL_API_TRY(parse_max_tokens(f, "max_tokens", 1, r));
  CARPOOL_API_TRY(parse_max_tokens(f, "max_completion_tokens", 1, r));
  CARPOOL_API_TRY(check_min_tokens(*r));
  bool logprobs = false;
  CARPOOL_API_TRY(f.boolean("logprobs", &logprobs));
  int64_t top = -1;
  CARPOOL_API_TRY(f.integer("top_logprobs", 0, limits.max_logprobs, &top));
  if (top > 0 && !logprobs) {  // 0 asks for nothing (as vLLM, which refuses only > 0)
    return bad_request("top_logprobs requires logprobs to be true", "top_logprobs");
  }
  if (logprobs) r->logprobs = top < 0 ? 0 : static_cast<int>(top);
  CARPOOL_API_TRY(f.boolean("add_generation_prompt", &r->add_generation_prompt));
  bool echo = false;  // vLLM's chat echo (the last message before the answer): not implemented
  CARPOOL_API_TRY(f.boolean("echo", &echo));
  if (echo) return bad_request("echo is not supported for chat (completions take it)", "echo");
  CARPOOL_API_TRY(parse_template_kwargs(body, &r->chat_template_kwargs));
  return std::nullopt;
}

}  // namespace carpool::server
