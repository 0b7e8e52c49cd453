// parse_messages (openai_request.h): a chat request's messages checked and flattened for the
// chat template, tool calls and results included.
#include "server/json_io.h"
#include "server/json_text.h"
#include "server/openai_request.h"

namespace carpool::server {
namespace {

using nlohmann::json;

// An assistant message's tool_calls, for the template as transformers' templates read them:
// {"id", "type": "function", "function": {"name", "arguments": an object}} (the arguments' JSON
// text parsed, as vLLM does, so that a template's `arguments | tojson` writes them once; "" and
// "null" are {}; a text that is no object, or that a double cannot hold, stays a string).
std::optional<ApiError> parse_message_tool_calls(const json& calls, const std::string& at,
                                                 nlohmann::ordered_json* msg) {
  if (!calls.is_array()) return bad_request(at + " must be a list", at);
  if (calls.size() > 128) return bad_request(at + " holds more than 128 calls", at);
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t j = 0; j < calls.size(); ++j) {
    const json& c = calls[j];
    const std::string cat = at + "[" + std::to_string(j) + "]";
    if (!c.is_object()) return bad_request(cat + " must be an object", cat);
    auto fn = c.find("function");
    if (fn == c.end() || !fn->is_object()) {
      return bad_request(cat + ".function must be an object", cat + ".function");
    }
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string()) {
      return bad_request(cat + ".function.name must be a string", cat + ".function.name");
    }
    nlohmann::ordered_json args = nlohmann::ordered_json::object();
    auto a = fn->find("arguments");
    if (a != fn->end() && !a->is_null()) {
      if (a->is_string()) {
        const std::string& text = a->get_ref<const std::string&>();
        const std::string param = cat + ".function.arguments";
        auto compact = compact_json(text);
        if (text.find_first_not_of(" \t\r\n") == std::string::npos ||
            (compact && *compact == "null")) {
          // "" and "null": no arguments, as vLLM reads them
        } else if (!compact || compact->front() != '{' || !json_integers_fit(*compact) ||
                   parse_json_text(text, param.c_str(), &args) || !args.is_object()) {
          // Not an object's text (a call cut short), or numbers beyond a double: the text as
          // given (OpenAI takes any string here; templates write a string as it is).
          args = text;
        }
      } else if (a->is_object()) {
        args = nlohmann::ordered_json::parse(a->dump());
      } else {
        return bad_request(cat + ".function.arguments must be a JSON object or its text",
                           cat + ".function.arguments");
      }
    }
    nlohmann::ordered_json call;
    auto id = c.find("id");
    if (id != c.end() && id->is_string()) call["id"] = id->get<std::string>();
    call["type"] = "function";
    call["function"] = {{"name", name->get<std::string>()}, {"arguments", std::move(args)}};
    out.push_back(std::move(call));
  }
  if (!out.empty()) (*msg)["tool_calls"] = std::move(out);
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_messages(const json& messages, const RequestLimits& limits,
                                       nlohmann::ordered_json* out) {
  if (!messages.is_array()) return bad_request("messages must be a list", "messages");
  if (messages.empty()) return bad_request("messages must not be empty", "messages");
  if (messages.size() > static_cast<size_t>(limits.max_messages)) {
    return bad_request("at most " + std::to_string(limits.max_messages) + " messages are allowed",
                       "messages");
  }
  *out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad_request(at + " must be an object", at);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return bad_request(at + ".role must be a string", at + ".role");
    }
    std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "developer" && r != "tool") {
      return bad_request(
          at + ".role must be system, developer, user, assistant or tool, got '" + r + "'",
          at + ".role");
    }
    if (r == "developer") r = "system";
    std::string text;
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (r != "assistant") return bad_request(at + ".content is required", at + ".content");
    } else if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        const std::string pat = at + ".content[" + std::to_string(j) + "]";
        if (!part.is_object()) return bad_request(pat + " must be an object", pat);
        auto type = part.find("type");
        if (type == part.end() || !type->is_string() || *type != "text") {
          return bad_request(pat + ".type must be \"text\" (only text is supported)",
                             pat + ".type");
        }
        auto t = part.find("text");
        if (t == part.end() || !t->is_string()) {
          return bad_request(pat + ".text must be a string", pat + ".text");
        }
        text += t->get<std::string>();
      }
    } else {
      return bad_request(at + ".content must be a string or a list of text parts", at + ".content");
    }
    nlohmann::ordered_json msg;
    msg["role"] = r;
    msg["content"] = std::move(text);
    if (r == "tool") {
      auto id = m.find("tool_call_id");
      if (id != m.end() && !id->is_null()) {
        if (!id->is_string()) {
          return bad_request(at + ".tool_call_id must be a string", at + ".tool_call_id");
        }
        msg["tool_call_id"] = id->get<std::string>();
      }
    }
    if (r == "assistant") {
      auto calls = m.find("tool_calls");
      if (calls != m.end() && !calls->is_null()) {
        CARPOOL_API_TRY(parse_message_tool_calls(*calls, at + ".tool_calls", &msg));
      }
    }
    out->push_back(std::move(msg));
  }
  return std::nullopt;
}

}  // namespace carpool::server
