#include "server/tool_calls.h"

#include <limits>

#include "server/json_schema_compile.h"
#include "server/json_text.h"
#include "util/random_id.h"

namespace carpool::server {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
// At most this many tools for "required": the union's tag is an enum (SchemaNode::literals).
constexpr size_t kMaxRequiredTools = 64;
// Whitespace bytes in a row in constrained calls: a small model otherwise spends most of its
// tokens on blank lines ("\n\n" between every token of a call, 52 tokens for one short call).
constexpr int kCallWhitespace = 1;

bool valid_name(const std::string& name, size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view rtrim(std::string_view s) {
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// One call, written {"name": ..., "arguments" (or "parameters"): {...} or that object's text},
// from its compact text (json_text.h: the arguments keep the model's digits).
std::optional<ToolCall> call_from(std::string_view compact) {
  auto members = json_members(compact);
  if (!members) return std::nullopt;
  std::optional<std::string> name;
  std::optional<std::string_view> args, params;
  for (const auto& [key, value] : *members) {
    if (key == "name") {
      name = json_string(value);
      if (!name) return std::nullopt;
    } else if (key == "arguments") {
      args = value;
    } else if (key == "parameters") {
      params = value;
    }
  }
  if (!name || name->empty()) return std::nullopt;
  const std::string_view a = args ? *args : params ? *params : std::string_view("null");
  ToolCall call;
  call.id = make_tool_call_id();
  call.name = std::move(*name);
  if (a == "null") {
    call.arguments = "{}";
  } else if (a.front() == '{') {
    call.arguments = std::string(a);
  } else if (a.front() == '"') {  // the arguments' text, as OpenAI writes them
    auto text = json_string(a);
    auto object = text ? compact_json(*text) : std::nullopt;
    if (!object || object->front() != '{') return std::nullopt;
    call.arguments = std::move(*object);
  } else {
    return std::nullopt;
  }
  return call;
}

std::optional<ToolCall> call_from_text(std::string_view text) {
  auto compact = compact_json(text);
  if (!compact) return std::nullopt;
  return call_from(*compact);
}

// A JSON array of calls.
bool calls_from_array(std::string_view text, std::vector<ToolCall>* calls) {
  auto compact = compact_json(text);
  auto elements = compact ? json_elements(*compact) : std::nullopt;
  if (!elements || elements->empty()) return false;
  for (std::string_view e : *elements) {
    auto call = call_from(e);
    if (!call) return false;
    calls->push_back(std::move(*call));
  }
  return true;
}

// The complete calls at the start of a list that max_tokens cut short: [{...}, {...}, {"na
bool leading_calls(std::string_view text, std::vector<ToolCall>* calls) {
  std::string_view rest = trim(text);
  if (rest.empty() || rest.front() != '[') return false;
  rest.remove_prefix(1);
  for (;;) {
    rest = trim(rest);
    const size_t end = json_container_end(rest);
    if (rest.empty() || rest.front() != '{' || end == std::string_view::npos) break;
    auto call = call_from_text(rest.substr(0, end));
    if (!call) break;
    calls->push_back(std::move(*call));
    rest = trim(rest.substr(end));
    if (rest.empty() || rest.front() != ',') break;
    rest.remove_prefix(1);
  }
  return !calls->empty();
}

// <tool_call>{...}</tool_call> blocks (the last one may lack its closing tag).
bool hermes_calls(std::string_view text, size_t first, std::vector<ToolCall>* calls) {
  size_t at = first;
  while (at != std::string_view::npos) {
    const size_t start = at + kHermesOpen.size();
    const size_t end = text.find(kHermesClose, start);
    auto call = call_from_text(trim(
        text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start)));
    if (!call) return false;
    calls->push_back(std::move(*call));
    if (end == std::string_view::npos) break;
    at = text.find(kHermesOpen, end + kHermesClose.size());
  }
  return true;
}

// {...} objects separated by ';' or whitespace (Llama 3.x), nothing else around them.
bool json_calls(std::string_view text, std::vector<ToolCall>* calls) {
  std::string_view rest = trim(text);
  while (!rest.empty()) {
    if (rest.front() != '{') return false;
    const size_t end = json_container_end(rest);
    if (end == std::string_view::npos) return false;
    auto call = call_from_text(rest.substr(0, end));
    if (!call) return false;
    calls->push_back(std::move(*call));
    rest = trim(rest.substr(end));
    if (!rest.empty() && rest.front() == ';') rest = trim(rest.substr(1));
  }
  return !calls->empty();
}

// The text of the JSON call format's marker the tokenizer may have written (skip_special_tokens
// false), stripped.
std::string_view strip_marker(std::string_view text, std::string_view marker) {
  std::string_view t = trim(text);
  if (t.substr(0, marker.size()) == marker) t.remove_prefix(marker.size());
  return trim(t);
}

// Appends the nodes of `part` (a compiled schema) to `out`, their indices shifted.
int32_t append_schema(const JsonSchema& part, JsonSchema* out) {
  const auto base = static_cast<int32_t>(out->nodes.size());
  for (SchemaNode n : part.nodes) {
    for (int32_t& c : n.children) c += c >= 0 ? base : 0;
    for (int32_t& v : n.variants) v += base;
    for (int32_t& a : n.alternatives) a += base;
    if (n.items >= 0) n.items += base;
    out->nodes.push_back(std::move(n));
  }
  return base;
}

}  // namespace

ToolFormat detect_tool_format(std::string_view src) {
  if (src.find("<tool_call>") != std::string_view::npos) return ToolFormat::kHermes;
  if (src.find("[TOOL_CALLS]") != std::string_view::npos) return ToolFormat::kMistral;
  // Llama 3.1 - 3.3: the tools listed as JSON, the call answered as {"name", "parameters"}.
  if (src.find("<|python_tag|>") != std::string_view::npos ||
      (src.find("tools") != std::string_view::npos &&
       src.find("\"parameters\"") != std::string_view::npos)) {
    return ToolFormat::kJson;
  }
  return ToolFormat::kNone;
}

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::kHermes:
      return "hermes";
    case ToolFormat::kJson:
      return "json";
    case ToolFormat::kMistral:
      return "mistral";
    default:
      return "none";
  }
}

std::string make_tool_call_id() {
  return "call_" + random_hex_id();
}

std::optional<ApiError> parse_tool_request(const json& body, std::string_view raw_body,
                                           const ToolLimits& limits, ToolRequest* out,
                                           std::shared_ptr<const JsonSchema>* schema) {
  *out = ToolRequest{};
  schema->reset();
  auto tools = body.find("tools");
  const bool given =
      tools != body.end() && !tools->is_null() && !(tools->is_array() && tools->empty());
  auto choice = body.find("tool_choice");
  const bool choice_given = choice != body.end() && !choice->is_null();
  if (!given) {
    if (tools != body.end() && !tools->is_null() && !tools->is_array()) {
      return bad_request("tools must be a list of functions", "tools");
    }
    if (choice_given && !(choice->is_string() && (*choice == "none" || *choice == "auto"))) {
      return bad_request("tool_choice needs tools", "tool_choice");
    }
    return std::nullopt;
  }
  if (!tools->is_array()) return bad_request("tools must be a list of functions", "tools");
  if (tools->size() > limits.max_tools) {
    return bad_request("at most " + std::to_string(limits.max_tools) + " tools are allowed",
                       "tools");
  }
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    const std::string at = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return bad_request(at + " must be an object", at);
    auto type = t.find("type");
    if (type == t.end() || *type != "function") {
      return bad_request(at + ".type must be \"function\"", at + ".type");
    }
    auto fn = t.find("function");
    if (fn == t.end() || !fn->is_object()) {
      return bad_request(at + ".function must be an object", at + ".function");
    }
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string() ||
        !valid_name(name->get<std::string>(), limits.max_name_bytes)) {
      return bad_request(at + ".function.name must be 1 to " +
                             std::to_string(limits.max_name_bytes) +
                             " characters of a-z, A-Z, 0-9, '_', '-' and '.'",
                         at + ".function.name");
    }
    for (const std::string& seen : out->names) {
      if (seen == *name) {
        return bad_request(at + ".function.name '" + seen + "' is given twice",
                           at + ".function.name");
      }
    }
    out->names.push_back(name->get<std::string>());
    auto desc = fn->find("description");
    if (desc != fn->end() && !desc->is_null() && !desc->is_string()) {
      return bad_request(at + ".function.description must be a string",
                         at + ".function.description");
    }
    auto params = fn->find("parameters");
    if (params != fn->end() && !params->is_null() && !params->is_object()) {
      return bad_request(at + ".function.parameters must be a JSON schema object",
                         at + ".function.parameters");
    }
  }

  out->choice = ToolChoice::kAuto;
  if (choice_given) {
    if (choice->is_string()) {
      const std::string c = choice->get<std::string>();
      if (c == "none") {
        out->choice = ToolChoice::kNone;
      } else if (c == "required") {
        out->choice = ToolChoice::kRequired;
      } else if (c != "auto") {
        return bad_request(
            "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": "
            "{\"name\": ...}}, got '" +
                c + "'",
            "tool_choice");
      }
    } else if (choice->is_object()) {
      auto fn = choice->find("function");
      auto name = fn != choice->end() && fn->is_object() ? fn->find("name") : fn;
      if (choice->value("type", json()) != "function" || fn == choice->end() || !fn->is_object() ||
          name == fn->end() || !name->is_string()) {
        return bad_request(
            "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
            "tool_choice");
      }
      out->named = name->get<std::string>();
      if (std::find(out->names.begin(), out->names.end(), out->named) == out->names.end()) {
        return bad_request("tool_choice names '" + out->named + "', which is not among the tools",
                           "tool_choice");
      }
      out->choice = ToolChoice::kNamed;
    } else {
      return bad_request("tool_choice must be a string or an object", "tool_choice");
    }
  }
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null()) {
    if (!p->is_boolean()) {
      return bad_request("parallel_tool_calls must be a boolean", "parallel_tool_calls");
    }
    out->parallel = p->get<bool>();
  }
  if (out->choice == ToolChoice::kNone) return std::nullopt;  // no tools shown
  // (The body was checked as JSON within bounds before it was parsed: json_io.h.)
  const ordered_json ordered =
      raw_body.empty() ? ordered_json() : ordered_json::parse(raw_body, nullptr, false);
  const ordered_json* declared =
      ordered.is_object() && ordered.contains("tools") ? &ordered["tools"] : nullptr;
  out->tools = declared != nullptr && declared->is_array() && declared->size() == tools->size()
                   ? *declared
                   : ordered_json::parse(tools->dump());
  if (!out->constrained()) return std::nullopt;

  // The constraint: each tool's parameters compiled (a tool without them takes {}).
  std::vector<std::shared_ptr<const JsonSchema>> compiled;
  for (size_t i = 0; i < out->names.size(); ++i) {
    if (out->choice == ToolChoice::kNamed && out->names[i] != out->named) {
      compiled.emplace_back();
      continue;
    }
    const ordered_json& fn = out->tools[i]["function"];
    // (No schema, null or {}: a function that takes no arguments.)
    ordered_json params =
        fn.contains("parameters") && !fn["parameters"].is_null() && !fn["parameters"].empty()
            ? fn["parameters"]
            : ordered_json{{"type", "object"},
                           {"properties", ordered_json::object()},
                           {"additionalProperties", false}};
    auto c = compile_json_schema(params);
    if (!c) {
      const std::string at = "tools[" + std::to_string(i) + "].function.parameters";
      return bad_request(
          at + ": " + c.error() + " (tool_choice " +
              (out->choice == ToolChoice::kNamed ? "naming a function" : "required") +
              " constrains the arguments to the schema; tool_choice auto does not)",
          at);
    }
    compiled.push_back(std::move(c).value());
  }
  if (out->choice == ToolChoice::kNamed) {
    for (auto& c : compiled) {
      if (!c) continue;
      auto named = std::make_shared<JsonSchema>(*c);
      named->max_whitespace = kCallWhitespace;
      *schema = std::move(named);
    }
    return std::nullopt;
  }
  if (out->names.size() > kMaxRequiredTools) {
    return bad_request(
        "tool_choice required takes at most " + std::to_string(kMaxRequiredTools) + " tools",
        "tools");
  }
  // [{"name": <tool>, "arguments": <its parameters>}, ...]: an array (node 0) of a tagged union
  // (node 1) whose tag is the name (node 2).
  auto s = std::make_shared<JsonSchema>();
  s->max_whitespace = kCallWhitespace;
  s->nodes.resize(3);
  SchemaNode& calls = s->nodes[0];
  calls.type = SchemaNode::Type::kArray;
  calls.items = 1;
  calls.min_items = 1;
  calls.max_items = out->parallel ? std::numeric_limits<int32_t>::max() : 1;
  s->nodes[1].type = SchemaNode::Type::kObject;
  s->nodes[1].keys = {"\"name\""};
  s->nodes[1].children = {2};
  s->nodes[2].type = SchemaNode::Type::kEnum;
  for (size_t i = 0; i < out->names.size(); ++i) {
    s->nodes[2].literals.push_back("\"" + out->names[i] + "\"");  // names need no escapes
    const auto v = static_cast<int32_t>(s->nodes.size());
    s->nodes.emplace_back();
    s->nodes[1].variants.push_back(v);
    const int32_t args = append_schema(*compiled[i], s.get());
    SchemaNode& variant = s->nodes[static_cast<size_t>(v)];
    variant.type = SchemaNode::Type::kObject;
    variant.keys = {"\"name\"", "\"arguments\""};
    variant.children = {2, args};
  }
  *schema = std::move(s);
  return std::nullopt;
}

ToolAnswer read_tool_answer(const ToolRequest& req, ToolFormat format, std::string_view text) {
  ToolAnswer a;
  switch (req.choice) {
    case ToolChoice::kNone:
      a.content = std::string(text);
      return a;
    case ToolChoice::kNamed: {
      ToolCall call;
      call.id = make_tool_call_id();
      call.name = req.named;
      call.arguments = std::string(trim(text));
      a.calls.push_back(std::move(call));
      return a;
    }
    case ToolChoice::kRequired:
      if (!calls_from_array(trim(text), &a.calls)) {  // cut short: the calls it completed
        a.calls.clear();
        if (!leading_calls(text, &a.calls)) a.content = std::string(text);
      }
      return a;
    case ToolChoice::kAuto:
      break;
  }
  bool found = false;
  size_t content_end = 0;
  if (format == ToolFormat::kHermes) {
    const size_t first = text.find(kHermesOpen);
    if (first != std::string_view::npos) {
      found = hermes_calls(text, first, &a.calls);
      content_end = rtrim(text.substr(0, first)).size();
    }
  } else if (format == ToolFormat::kJson) {
    found = json_calls(strip_marker(text, "<|python_tag|>"), &a.calls);
  } else if (format == ToolFormat::kMistral) {
    std::string_view t = strip_marker(text, "[TOOL_CALLS]");
    found = !t.empty() && t.front() == '[' && calls_from_array(t, &a.calls);
  }
  if (!found) {
    a.calls.clear();
    a.content = std::string(text);
    return a;
  }
  if (!req.parallel && a.calls.size() > 1) a.calls.resize(1);  // the first, as vLLM keeps
  if (content_end > 0) {
    a.content = std::string(text.substr(0, content_end));
  }
  return a;
}

size_t ToolStreamFilter::sendable() {
  if (req_.choice == ToolChoice::kNone) return text_.size();
  if (req_.choice == ToolChoice::kNamed) return rtrim(text_).size();  // the arguments, trimmed
  if (req_.choice != ToolChoice::kAuto) return 0;                     // all of it is calls
  if (format_ == ToolFormat::kHermes) {
    if (!in_call_) {
      const size_t from = sent_ >= kHermesOpen.size() ? sent_ - kHermesOpen.size() : 0;
      const size_t at = text_.find(kHermesOpen, from);
      if (at != std::string::npos) {
        in_call_ = true;
        call_at_ = at;
      }
    }
    size_t end = in_call_ ? call_at_ : text_.size();
    if (!in_call_) {  // hold a suffix that may be the start of the tag
      for (size_t k = std::min(kHermesOpen.size() - 1, end); k > 0; --k) {
        if (std::string_view(text_).substr(end - k) == kHermesOpen.substr(0, k)) {
          end -= k;
          break;
        }
      }
    }
    return rtrim(std::string_view(text_).substr(0, end)).size();  // whitespace may precede a call
  }
  // JSON formats: the first character tells a call from text.
  if (!plain_ && !in_call_) {
    const std::string_view t = trim(text_);
    if (t.empty()) return 0;
    const char open = format_ == ToolFormat::kMistral ? '[' : '{';
    const std::string_view marker =
        format_ == ToolFormat::kMistral ? "[TOOL_CALLS]" : "<|python_tag|>";
    if (t.front() == open || t.substr(0, marker.size()) == marker) {
      in_call_ = true;  // held to the end (a text that only looks like a call is sent then)
    } else if (marker.substr(0, t.size()) == t) {
      return 0;  // may still become the marker
    } else {
      plain_ = true;
    }
  }
  return plain_ ? text_.size() : 0;
}

std::string ToolStreamFilter::push(std::string_view delta) {
  text_ += delta;
  size_t begin = sent_;
  if (req_.choice == ToolChoice::kNamed && sent_ == 0) {  // whitespace before the object
    begin = 0;
    while (begin < text_.size() && is_ws(text_[begin])) ++begin;
  }
  const size_t end = sendable();
  if (end <= begin) return {};
  std::string out = text_.substr(begin, end - begin);
  sent_ = end;
  return out;
}

ToolAnswer ToolStreamFilter::finish() const {
  ToolAnswer a = read_tool_answer(req_, format_, text_);
  if (a.content) {
    // What was sent is a prefix of the content (sendable() never passes a call's start).
    if (a.content->size() > sent_) {
      a.content = a.content->substr(sent_);
    } else {
      a.content.reset();
    }
  }
  return a;
}

}  // namespace carpool::server
