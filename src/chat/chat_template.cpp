#include "chat/chat_template.h"

#include <ctime>
#include <new>
#include <nlohmann/json.hpp>

#include "chat/ast.h"
#include "chat/error.h"
#include "chat/interpreter.h"
#include "chat/parser.h"

namespace carpool::chat {

struct ChatTemplate::Impl {
  Body body;
  std::string source;
};

namespace {

template <typename Json>
Value from_json(const Json& j, int depth) {
  if (depth > kMaxContextDepth)
    fail("render context nested deeper than " + std::to_string(kMaxContextDepth));
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::floating(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json(x, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      ValueDict d;
      d.entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.entries.emplace_back(Value::string(it.key()), from_json(it.value(), depth + 1));
      }
      return Value::dict(std::move(d));
    }
    default:
      fail("unsupported value in render context");
  }
}

template <typename Json>
Result<std::string> render_json(const Body& body, const Json& context,
                                const RenderOptions& options) {
  if (!context.is_object())
    return Status::error("chat template: render context must be a JSON object");
  try {
    Value ctx = from_json(context, 0);
    int64_t now =
        options.now_unix_s ? *options.now_unix_s : static_cast<int64_t>(std::time(nullptr));
    return render_body(body, ctx.as_dict(), options.limits, now);
  } catch (const TemplateError& e) {
    return Status::error("chat template: " + e.message);
  } catch (const std::bad_alloc&) {
    return Status::error("chat template: out of memory while rendering");
  }
}

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string_view source) {
  if (source.size() > kMaxTemplateBytes) {
    return Status::error("chat template: source larger than " + std::to_string(kMaxTemplateBytes) +
                         " bytes");
  }
  try {
    auto impl = std::make_shared<Impl>();
    impl->body = parse_template(source);
    impl->source = std::string(source);
    return ChatTemplate(std::move(impl));
  } catch (const TemplateError& e) {
    return Status::error("chat template: " + e.message);
  } catch (const std::bad_alloc&) {
    return Status::error("chat template: out of memory while parsing");
  }
}

const std::string& ChatTemplate::source() const {
  return impl_->source;
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& context,
                                         const RenderOptions& options) const {
  return render_json(impl_->body, context, options);
}

Result<std::string> ChatTemplate::render(const nlohmann::json& context,
                                         const RenderOptions& options) const {
  return render_json(impl_->body, context, options);
}

Result<std::string> ChatTemplate::render_chat(const nlohmann::ordered_json& messages,
                                              bool add_generation_prompt,
                                              std::string_view bos_token,
                                              std::string_view eos_token,
                                              const RenderOptions& options) const {
  return render_chat(messages, add_generation_prompt, bos_token, eos_token,
                     nlohmann::ordered_json::object(), options);
}

Result<std::string> ChatTemplate::render_chat(const nlohmann::ordered_json& messages,
                                              bool add_generation_prompt,
                                              std::string_view bos_token,
                                              std::string_view eos_token,
                                              const nlohmann::ordered_json& extra_vars,
                                              const RenderOptions& options) const {
  nlohmann::ordered_json ctx =
      extra_vars.is_object() ? extra_vars : nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = std::string(bos_token);
  ctx["eos_token"] = std::string(eos_token);
  return render(ctx, options);
}

Result<std::string> ChatTemplate::render_chat(const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt,
                                              std::string_view bos_token,
                                              std::string_view eos_token,
                                              const RenderOptions& options) const {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) {
    nlohmann::ordered_json msg = nlohmann::ordered_json::object();
    msg["role"] = m.role;
    msg["content"] = m.content;
    list.push_back(std::move(msg));
  }
  return render_chat(list, add_generation_prompt, bos_token, eos_token, options);
}

}  // namespace carpool::chat
