// Tool calls: the formats found in chat templates, the request's tools and tool_choice (what is
// refused, and the constraint a required or named choice gets), answers read for calls in each
// format, and streaming that sends the same content as the answer read whole.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/json_schema.h"

namespace carpool::server {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::string golden_template(const std::string& name) {
  std::ifstream f(std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/chat/" + name + ".json");
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str())["template"].get<std::string>();
}

TEST(ToolFormat, FoundInTemplates) {
  EXPECT_EQ(detect_tool_format(golden_template("qwen3")), ToolFormat::kHermes);
  for (const char* none : {"smollm2", "llama3", "llama3_1", "gemma3"}) {
    EXPECT_EQ(detect_tool_format(golden_template(none)), ToolFormat::kNone) << none;
  }
  // Llama 3.1's own (with tools): the calls are {"name", "parameters"} objects.
  EXPECT_EQ(detect_tool_format("{%- if tools %}Respond in the format {\"name\": function name, "
                               "\"parameters\": dictionary of argument name and its value}"),
            ToolFormat::kJson);
  EXPECT_EQ(detect_tool_format("{{- '<|python_tag|>' + tool_call.name }}"), ToolFormat::kJson);
  EXPECT_EQ(detect_tool_format("[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS][TOOL_CALLS]"),
            ToolFormat::kMistral);
}

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "d",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}}}}},
  {"type": "function", "function": {"name": "now"}}])";

struct Parsed {
  std::optional<ApiError> error;
  ToolRequest req;
  std::shared_ptr<const JsonSchema> schema;
};

Parsed parse(const std::string& extra) {
  const std::string text = std::string("{\"tools\": ") + kTools + extra + "}";
  const json body = json::parse(text);
  Parsed p;
  p.error = parse_tool_request(body, text, ToolLimits{}, &p.req, &p.schema);
  return p;
}

bool accepts(const JsonSchema& s, const std::string& text) {
  SchemaState st(&s);
  return st.feed(text) && st.complete();
}

TEST(ToolRequest, Choices) {
  Parsed p = parse("");
  ASSERT_FALSE(p.error) << p.error->message;
  EXPECT_EQ(p.req.choice, ToolChoice::kAuto);  // the default with tools
  EXPECT_EQ(p.req.names, (std::vector<std::string>{"get_weather", "now"}));
  EXPECT_EQ(p.schema, nullptr);
  ASSERT_TRUE(p.req.tools.is_array());
  EXPECT_EQ(p.req.tools[0]["function"]["parameters"]["properties"].begin().key(), "city");

  p = parse(", \"tool_choice\": \"none\"");
  ASSERT_FALSE(p.error);
  EXPECT_EQ(p.req.choice, ToolChoice::kNone);
  EXPECT_TRUE(p.req.tools.is_null());  // not shown to the model

  p = parse(R"(, "tool_choice": {"type": "function", "function": {"name": "get_weather"}})");
  ASSERT_FALSE(p.error) << p.error->message;
  EXPECT_EQ(p.req.choice, ToolChoice::kNamed);
  ASSERT_NE(p.schema, nullptr);
  EXPECT_TRUE(accepts(*p.schema, R"({"city": "Oslo", "days": 2})"));
  EXPECT_FALSE(accepts(*p.schema, R"({"days": 2, "city": "Oslo"})"));
  EXPECT_FALSE(accepts(*p.schema, R"([{"name": "now", "arguments": {}}])"));

  p = parse(R"(, "tool_choice": "required")");
  ASSERT_FALSE(p.error) << p.error->message;
  ASSERT_NE(p.schema, nullptr);
  EXPECT_TRUE(accepts(*p.schema, R"([{"name": "now", "arguments": {}}])"));
  EXPECT_TRUE(accepts(*p.schema,
                      R"([{"name": "get_weather", "arguments": {"city": "a", "days": 1}},)"
                      R"( {"name": "now", "arguments": {}}])"));
  EXPECT_FALSE(accepts(*p.schema, R"([{"name": "now", "arguments": {"city": "a"}}])"));
  EXPECT_FALSE(accepts(*p.schema, R"([{"name": "get_weather", "arguments": {}}])"));
  EXPECT_FALSE(accepts(*p.schema, "[]"));

  // parameters {} (as some clients send for no arguments): as if left out
  const std::string empty_params = R"({"tools": [{"type": "function", "function": {"name": "f",
      "parameters": {}}}], "tool_choice": "required"})";
  ASSERT_FALSE(
      parse_tool_request(json::parse(empty_params), empty_params, ToolLimits{}, &p.req, &p.schema));
  EXPECT_TRUE(accepts(*p.schema, R"([{"name": "f", "arguments": {}}])"));
  EXPECT_FALSE(accepts(*p.schema, R"([{"name": "f", "arguments": {"a": 1}}])"));
  // Constrained calls take no runs of whitespace (a small model padded them with blank lines).
  EXPECT_FALSE(accepts(*p.schema, "[{\"name\": \"f\",\n\n\"arguments\": {}}]"));
  EXPECT_TRUE(accepts(*p.schema, "[{\"name\": \"f\",\n\"arguments\": {}}]"));

  p = parse(R"(, "tool_choice": "required", "parallel_tool_calls": false)");
  ASSERT_FALSE(p.error);
  EXPECT_TRUE(accepts(*p.schema, R"([{"name": "now", "arguments": {}}])"));
  EXPECT_FALSE(accepts(*p.schema,
                       R"([{"name": "now", "arguments": {}}, {"name": "now", "arguments": {}}])"));
}

TEST(ToolRequest, Refusals) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"tools": {"type": "function"}})", "tools"},
      {R"({"tools": [1]})", "tools[0]"},
      {R"({"tools": [{"type": "retrieval", "function": {"name": "a"}}]})", "tools[0].type"},
      {R"({"tools": [{"type": "function"}]})", "tools[0].function"},
      {R"({"tools": [{"type": "function", "function": {"name": "a b"}}]})",
       "tools[0].function.name"},
      {R"({"tools": [{"type": "function", "function": {"name": ""}}]})", "tools[0].function.name"},
      {R"({"tools": [{"type": "function", "function": {"name": "a"}},
                     {"type": "function", "function": {"name": "a"}}]})",
       "tools[1].function.name"},
      {R"({"tools": [{"type": "function", "function": {"name": "a", "parameters": "x"}}]})",
       "tools[0].function.parameters"},
      {R"({"tools": [{"type": "function", "function": {"name": "a", "description": 3}}]})",
       "tools[0].function.description"},
      {R"({"tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": "any"})",
       "tool_choice"},
      {R"({"tools": [{"type": "function", "function": {"name": "a"}}],
           "tool_choice": {"type": "function", "function": {"name": "b"}}})",
       "tool_choice"},
      {R"({"tools": [{"type": "function", "function": {"name": "a"}}],
           "tool_choice": {"function": {"name": "a"}}})",
       "tool_choice"},
      {R"({"tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": 1})",
       "tool_choice"},
      {R"({"tools": [{"type": "function", "function": {"name": "a"}}],
           "parallel_tool_calls": "yes"})",
       "parallel_tool_calls"},
      {R"({"tool_choice": "required"})", "tool_choice"},
      // A schema the constraint cannot enforce: refused where it would constrain the answer.
      {R"({"tools": [{"type": "function", "function": {"name": "a", "parameters":
           {"type": "object", "properties": {"n": {"type": "string", "pattern": "^a"}}}}}],
           "tool_choice": "required"})",
       "tools[0].function.parameters"},
  };
  for (const auto& [text, param] : cases) {
    const json body = json::parse(text);
    ToolRequest req;
    std::shared_ptr<const JsonSchema> schema;
    auto e = parse_tool_request(body, text, ToolLimits{}, &req, &schema);
    ASSERT_TRUE(e) << text;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->param, param) << text << ": " << e->message;
  }
  // The same schema with tool_choice auto: shown to the model, nothing to enforce.
  const std::string text = R"({"tools": [{"type": "function", "function": {"name": "a",
      "parameters": {"type": "object", "properties": {"n": {"minimum": 1}}}}}]})";
  ToolRequest req;
  std::shared_ptr<const JsonSchema> schema;
  EXPECT_FALSE(parse_tool_request(json::parse(text), text, ToolLimits{}, &req, &schema));
  // No tools: tool_choice none or auto is harmless.
  for (const char* t : {R"({"tool_choice": "none"})", R"({"tools": [], "tool_choice": "auto"})"}) {
    EXPECT_FALSE(parse_tool_request(json::parse(t), t, ToolLimits{}, &req, &schema));
    EXPECT_EQ(req.choice, ToolChoice::kNone);
  }
}

ToolRequest request(ToolChoice choice) {
  ToolRequest r;
  r.choice = choice;
  r.names = {"get_weather", "now"};
  if (choice == ToolChoice::kNamed) r.named = "get_weather";
  return r;
}

struct Case {
  ToolFormat format;
  ToolChoice choice;
  std::string text;
  std::optional<std::string> content;
  std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
};

std::vector<Case> cases() {
  const ToolChoice kAuto = ToolChoice::kAuto;
  return {
      {ToolFormat::kHermes, kAuto, "Plain answer.", "Plain answer.", {}},
      {ToolFormat::kHermes,
       kAuto,
       "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
       "\"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n"
       "</tool_call>",
       "Let me look.",
       {{"get_weather", "{\"city\":\"Oslo\"}"}, {"now", "{}"}}},
      {ToolFormat::kHermes, kAuto, "<tool_call>{\"name\": \"now\"}", std::nullopt, {{"now", "{}"}}},
      // arguments given as their text, as OpenAI writes them
      {ToolFormat::kHermes,
       kAuto,
       "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}"
       "</tool_call>",
       std::nullopt,
       {{"get_weather", "{\"city\":\"Rome\"}"}}},
      // not a call after all: the text stays text
      {ToolFormat::kHermes, kAuto, "Use <tool_call> tags.", "Use <tool_call> tags.", {}},
      {ToolFormat::kHermes, kAuto, "a <tool_ b", "a <tool_ b", {}},
      {ToolFormat::kJson,
       kAuto,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\", \"days\": 2}}; "
       "{\"name\": \"now\", \"parameters\": {}}",
       std::nullopt,
       {{"get_weather", "{\"city\":\"Oslo\",\"days\":2}"}, {"now", "{}"}}},
      {ToolFormat::kJson,
       kAuto,
       "<|python_tag|>{\"name\": \"now\", \"parameters\": {}}",
       std::nullopt,
       {{"now", "{}"}}},
      {ToolFormat::kJson, kAuto, "  The answer is {1}.", "  The answer is {1}.", {}},
      {ToolFormat::kJson, kAuto, "{\"x\": 1} is JSON", "{\"x\": 1} is JSON", {}},
      {ToolFormat::kMistral,
       kAuto,
       "[{\"name\": \"now\", \"arguments\": {}}]",
       std::nullopt,
       {{"now", "{}"}}},
      {ToolFormat::kMistral,
       kAuto,
       "[TOOL_CALLS][{\"name\": \"now\", \"arguments\": {}}]",
       std::nullopt,
       {{"now", "{}"}}},
      {ToolFormat::kMistral, kAuto, "[1] says so.", "[1] says so.", {}},
      {ToolFormat::kNone,
       ToolChoice::kRequired,
       "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
       std::nullopt,
       {{"get_weather", "{\"city\":\"Oslo\"}"}}},
      // cut short by max_tokens
      {ToolFormat::kNone,
       ToolChoice::kRequired,
       "[{\"name\": \"get_weather\", \"argum",
       "[{\"name\": \"get_weather\", \"argum",
       {}},
      // ... keeping the calls it completed
      {ToolFormat::kNone,
       ToolChoice::kRequired,
       "[{\"name\": \"now\", \"arguments\": {}} , {\"name\": \"get_weather\", \"argum",
       std::nullopt,
       {{"now", "{}"}}},
      {ToolFormat::kHermes,
       ToolChoice::kNamed,
       "\n{\"city\": \"Oslo\"} ",
       std::nullopt,
       {{"get_weather", "{\"city\": \"Oslo\"}"}}},
      {ToolFormat::kHermes, ToolChoice::kNone, "text <tool_call>", "text <tool_call>", {}},
      // numbers as the model wrote them (a double would change the first and refuse the second)
      {ToolFormat::kNone,
       ToolChoice::kRequired,
       "[{\"name\": \"get_weather\", \"arguments\": {\"n\": 123456789012345678901234567890, "
       "\"x\": 5e400}}]",
       std::nullopt,
       {{"get_weather", "{\"n\":123456789012345678901234567890,\"x\":5e400}"}}},
      {ToolFormat::kHermes,
       kAuto,
       "<tool_call>\n{\"name\": \"now\", \"arguments\": {\"t\": 1.50}}\n</tool_call>",
       std::nullopt,
       {{"now", "{\"t\":1.50}"}}},
  };
}

void expect_answer(const Case& c, const ToolAnswer& a, const std::string& where) {
  EXPECT_EQ(a.content, c.content) << where;
  ASSERT_EQ(a.calls.size(), c.calls.size()) << where;
  for (size_t k = 0; k < a.calls.size(); ++k) {
    EXPECT_EQ(a.calls[k].name, c.calls[k].first) << where;
    EXPECT_EQ(a.calls[k].arguments, c.calls[k].second) << where;
    EXPECT_EQ(a.calls[k].id.rfind("call_", 0), 0u) << where;
  }
}

TEST(ToolAnswer, ReadInEachFormat) {
  for (const Case& c : cases()) {
    const ToolRequest req = request(c.choice);
    expect_answer(c, read_tool_answer(req, c.format, c.text), c.text);
  }
}

// parallel_tool_calls false: the first call alone (as vLLM keeps it), in the auto formats too.
TEST(ToolAnswer, OneCallWithoutParallelCalls) {
  ToolRequest req = request(ToolChoice::kAuto);
  req.parallel = false;
  const std::string two =
      "<tool_call>{\"name\": \"now\"}</tool_call><tool_call>{\"name\": \"get_weather\"}"
      "</tool_call>";
  ToolAnswer a = read_tool_answer(req, ToolFormat::kHermes, two);
  ASSERT_EQ(a.calls.size(), 1u);
  EXPECT_EQ(a.calls[0].name, "now");
  ToolStreamFilter f(req, ToolFormat::kHermes);
  EXPECT_EQ(f.push(two), "");
  EXPECT_EQ(f.finish().calls.size(), 1u);
}

// Streamed in pieces of every size from 1 to 4 bytes: the content sent while streaming plus what
// finish() adds is the content read whole, and the calls are the same.
TEST(ToolAnswer, StreamingSendsTheSameContent) {
  for (const Case& c : cases()) {
    const ToolRequest req = request(c.choice);
    for (size_t piece = 1; piece <= 4; ++piece) {
      ToolStreamFilter f(req, c.format);
      std::string sent;
      for (size_t i = 0; i < c.text.size(); i += piece) sent += f.push(c.text.substr(i, piece));
      ToolAnswer end = f.finish();
      const std::string where = c.text + " (pieces of " + std::to_string(piece) + ")";
      if (c.choice == ToolChoice::kNamed) {  // the arguments stream instead of content
        EXPECT_EQ(sent, c.calls[0].second) << where;
        continue;
      }
      if (end.content) sent += *end.content;
      EXPECT_EQ(sent, c.content.value_or("")) << where;
      end.content = c.content;
      expect_answer(c, end, where);
    }
  }
}

}  // namespace
}  // namespace carpool::server
