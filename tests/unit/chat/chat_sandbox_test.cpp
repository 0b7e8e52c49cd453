// Sandbox tests: hostile templates and contexts end with a clear error, never a crash or hang.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "chat/chat_template.h"

namespace carpool::chat {
namespace {

// Parses and renders `source` with an empty context; returns the error ("" on success).
std::string render_error(const std::string& source, const RenderLimits& limits = {},
                         const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl.is_ok()) return tmpl.error();
  RenderOptions options;
  options.limits = limits;
  auto out = tmpl->render(context, options);
  return out.is_ok() ? "" : out.error();
}

void expect_error_containing(const std::string& error, const std::string& needle) {
  EXPECT_NE(error.find(needle), std::string::npos) << "error was: \"" << error << "\"";
}

TEST(ChatSandbox, NestedLoopsHitTheIterationLimit) {
  RenderLimits limits;
  limits.max_loop_iterations = 10000;
  expect_error_containing(
      render_error(
          "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
          limits),
      "loop limit");
}

TEST(ChatSandbox, BusyTemplateHitsTheStepBudget) {
  RenderLimits limits;
  limits.max_steps = 5000;
  expect_error_containing(
      render_error("{% for i in range(1000) %}{{ i + i * i - i // 3 }}{% endfor %}", limits),
      "operation budget");
}

TEST(ChatSandbox, UnboundedMacroRecursionIsRefused) {
  RenderLimits limits;
  limits.max_recursion_depth = 20;
  expect_error_containing(
      render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", limits),
      "recursion limit");
}

TEST(ChatSandbox, HugeRepetitionIsRefusedBeforeAllocating) {
  expect_error_containing(render_error("{{ 'x' * 1000000000000 }}"), "output limit");
  expect_error_containing(render_error("{{ [1, 2] * 1000000000000 }}"), "output limit");
}

TEST(ChatSandbox, OutputSizeIsLimited) {
  RenderLimits limits;
  limits.max_output_bytes = 100000;
  expect_error_containing(
      render_error("{% for i in range(1000) %}{{ 'abcdefgh' * 100 }}{% endfor %}", limits),
      "output exceeds");
}

TEST(ChatSandbox, ExponentialStringGrowthIsRefused) {
  expect_error_containing(
      render_error("{% set ns = namespace(s='x') %}{% for i in range(100) %}"
                   "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"),
      "output limit");
}

TEST(ChatSandbox, RangeIsBounded) {
  expect_error_containing(render_error("{{ range(1000000000) | length }}"), "range too big");
}

TEST(ChatSandbox, DeeplyNestedExpressionIsAParseError) {
  std::string source = "{{ " + std::string(50000, '(') + "1" + std::string(50000, ')') + " }}";
  expect_error_containing(render_error(source), "nested too deeply");
  std::string lists = "{{ " + std::string(50000, '[') + std::string(50000, ']') + " }}";
  expect_error_containing(render_error(lists), "nested too deeply");
  std::string nots = "{{ ";
  for (int i = 0; i < 50000; ++i) nots += "not ";
  expect_error_containing(render_error(nots + "1 }}"), "nested too deeply");
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  expect_error_containing(render_error(ifs), "nested too deeply");
}

// Chains of operators, attributes, indexes, calls, filters and tests nest without parentheses;
// evaluating (and freeing) 20,000 links overflowed the stack.
TEST(ChatSandbox, LongOperatorChainsAreAParseError) {
  auto chain = [](const std::string& head, const std::string& link, int n) {
    std::string s = "{{ " + head;
    for (int i = 0; i < n; ++i) s += link;
    return s + " }}";
  };
  for (const std::string& source :
       {chain("x", ".a", 20000), chain("x", "[0]", 20000), chain("x", "()", 20000),
        chain("1", " + 1", 20000), chain("'a'", " ~ 'a'", 20000), chain("1", " and 1", 20000),
        chain("1", " or 1", 20000), chain("x", " | e", 20000), chain("2", " ** 1", 20000),
        chain("1", " and 1 is not none", 20000)}) {
    expect_error_containing(render_error(source), "nested too deeply");
  }
  // A long but reasonable chain still renders.
  EXPECT_EQ(render_error(chain("1", " + 1", 60)), "");
}

TEST(ChatSandbox, MacroDefaultCallingTheMacroIsBounded) {
  expect_error_containing(render_error("{% macro f(x=f()) %}{% endmacro %}{{ f() }}"),
                          "recursion limit");
}

// Lists count at kListItemBytes per item against the size limits, and what a render builds in all
// is bounded: [0] * 8388608 was under the limit (it counted items) and took 0.9 GB.
TEST(ChatSandbox, ListsAndBuiltBytesAreBounded) {
  expect_error_containing(render_error("{% set x = [0] * 8388608 %}"), "the sandbox allows");
  expect_error_containing(render_error("{% set ns = namespace(l=[0]) %}{% for i in range(40) %}"
                                       "{% set ns.l = ns.l + ns.l %}{% endfor %}"),
                          "the sandbox allows");
  expect_error_containing(render_error("{{ ('a,' * 4000000).split(',') | length }}"),
                          "the sandbox allows");
  expect_error_containing(
      render_error("{% for i in range(1000) %}{% set x = [0] * 100000 %}{% endfor %}"),
      "bytes of strings and lists");
  EXPECT_EQ(render_error("{{ ('a,' * 1000).split(',') | length }}"), "");
  EXPECT_EQ(render_error("{% set x = [0] * 100000 %}{{ x | length }}"), "");
}

TEST(ChatSandbox, DeeplyNestedContextIsRefused) {
  nlohmann::ordered_json deep = nlohmann::ordered_json::array();
  for (int i = 0; i < 100; ++i) deep = nlohmann::ordered_json::array({deep});
  nlohmann::ordered_json ctx = {{"x", deep}};
  expect_error_containing(render_error("{{ x }}", {}, ctx), "nested deeper");
}

TEST(ChatSandbox, SelfReferencingNamespaceDoesNotRecurseForever) {
  expect_error_containing(render_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"),
                          "nested too deeply");
  // Setting the cycle up without printing it renders fine (and frees cleanly).
  EXPECT_EQ(render_error("{% set ns = namespace() %}{% set ns.me = [ns] %}ok"), "");
}

TEST(ChatSandbox, NoAccessBeyondTheData) {
  // Python internals are not reachable: unknown attributes are undefined, and using them fails.
  EXPECT_EQ(render_error("{{ messages.__class__ }}{{ ''.__class__ }}", {},
                         nlohmann::ordered_json{{"messages", nlohmann::ordered_json::array()}}),
            "");
  expect_error_containing(render_error("{{ ''.__class__.__mro__ }}"), "undefined");
  expect_error_containing(render_error("{{ cycler }}{{ lipsum() }}"), "undefined");
  // Mutating methods of the sandboxed (immutable) environment do not exist.
  expect_error_containing(render_error("{% set l = [1] %}{{ l.append(2) }}"), "undefined");
}

TEST(ChatSandbox, UnsupportedTagsAreClearErrors) {
  expect_error_containing(render_error("{% include 'x.html' %}"), "unsupported tag 'include'");
  expect_error_containing(render_error("{% extends 'base' %}"), "unsupported tag 'extends'");
  expect_error_containing(render_error("{% import 'm' as m %}"), "unsupported tag 'import'");
}

TEST(ChatSandbox, SyntaxErrorsNameTheLine) {
  expect_error_containing(render_error("line1\n{{ 1 + }}"), "line 2");
  expect_error_containing(render_error("{% if true %}\n\n{% endfor %}"), "line 3");
  expect_error_containing(render_error("{{ 'unterminated }}"), "unterminated string");
  expect_error_containing(render_error("{# never closed"), "unterminated comment");
  expect_error_containing(render_error("{% break %}"), "outside of a loop");
}

TEST(ChatSandbox, RuntimeErrorsAreReported) {
  expect_error_containing(render_error("{{ 1 // 0 }}"), "division");
  expect_error_containing(render_error("{{ 9223372036854775807 + 1 }}"), "overflow");
  expect_error_containing(render_error("{{ raise_exception('boom') }}"), "boom");
  expect_error_containing(render_error("{{ x.y }}"), "'x' is undefined");
  expect_error_containing(render_error("{{ {'a': 1} | tojson(ensure_ascii=true) }}"),
                          "not supported");
}

TEST(ChatSandbox, ContextMustBeAnObject) {
  auto tmpl = ChatTemplate::parse("x");
  ASSERT_TRUE(tmpl.is_ok());
  auto out = tmpl->render(nlohmann::ordered_json::array());
  ASSERT_FALSE(out.is_ok());
  expect_error_containing(out.error(), "JSON object");
}

TEST(ChatSandbox, OversizedTemplateIsRefused) {
  std::string big(kMaxTemplateBytes + 1, 'x');
  expect_error_containing(render_error(big), "larger than");
}

TEST(ChatTemplateApi, RenderChatWithPlainMessages) {
  auto tmpl = ChatTemplate::parse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor "
      "%}"
      "{% if add_generation_prompt %}<assistant>{% endif %}");
  ASSERT_TRUE(tmpl.is_ok()) << tmpl.error();
  std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "U"}};
  auto out = tmpl->render_chat(messages, true, "<s>", "</s>");
  ASSERT_TRUE(out.is_ok()) << out.error();
  EXPECT_EQ(out.value(), "<s><system>S</s><user>U</s><assistant>");
  auto no_prompt = tmpl->render_chat(std::vector<ChatMessage>{{"user", "U"}}, false, "", "");
  ASSERT_TRUE(no_prompt.is_ok());
  EXPECT_EQ(no_prompt.value(), "<user>U");
}

TEST(ChatTemplateApi, RenderChatWithMoreVariables) {
  // chat_template_kwargs: e.g. Qwen3's enable_thinking; the standard variables keep their values.
  auto tmpl = ChatTemplate::parse(
      "{% if enable_thinking is defined and not enable_thinking %}[no-think]{% endif %}"
      "{{ messages | length }}{{ bos_token }}{% if add_generation_prompt %}<a>{% endif %}");
  ASSERT_TRUE(tmpl.is_ok()) << tmpl.error();
  const auto msgs = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "U"}])");
  auto extra = nlohmann::ordered_json::parse(
      R"({"enable_thinking": false, "messages": [], "bos_token": "X", "add_generation_prompt": false})");
  auto out = tmpl->render_chat(msgs, true, "<s>", "</s>", extra);
  ASSERT_TRUE(out.is_ok()) << out.error();
  EXPECT_EQ(out.value(), "[no-think]1<s><a>");
  auto plain = tmpl->render_chat(msgs, true, "<s>", "</s>");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain.value(), "1<s><a>");
}

TEST(ChatTemplateApi, ParsedTemplateIsReusable) {
  auto tmpl =
      ChatTemplate::parse("{% set ns = namespace(n=0) %}{% set ns.n = ns.n + x %}{{ ns.n }}");
  ASSERT_TRUE(tmpl.is_ok());
  for (int i = 0; i < 3; ++i) {
    auto out = tmpl->render(nlohmann::ordered_json{{"x", i}});
    ASSERT_TRUE(out.is_ok());
    EXPECT_EQ(out.value(), std::to_string(i));
  }
}

}  // namespace
}  // namespace carpool::chat
