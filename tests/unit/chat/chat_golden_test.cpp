// Golden tests: renders real chat templates and feature snippets and compares, byte for byte,
// with Python jinja2 configured as Hugging Face transformers configures it. The fixtures are
// written by scripts/golden/make_chat_fixtures.py; cases where jinja2 raised must fail here too.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "chat/chat_template.h"

namespace carpool::chat {
namespace {

nlohmann::ordered_json load_fixture(const std::string& name) {
  std::string path = std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/chat/" + name + ".json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::ordered_json::parse(ss.str());
}

// Renders one case; returns "" and sets *error when parsing or rendering failed.
std::string render_case(const std::string& source, const nlohmann::ordered_json& c,
                        std::string* error) {
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl.is_ok()) {
    *error = tmpl.error();
    return "";
  }
  RenderOptions options;
  options.now_unix_s = c.at("now").get<int64_t>();
  auto out = tmpl->render(c.at("context"), options);
  if (!out.is_ok()) {
    *error = out.error();
    return "";
  }
  return out.value();
}

// Returns the number of cases checked.
int check_fixture(const std::string& name) {
  nlohmann::ordered_json fixture = load_fixture(name);
  int checked = 0;
  for (const auto& c : fixture.at("cases")) {
    std::string source = c.contains("template") ? c.at("template").get<std::string>()
                                                : fixture.at("template").get<std::string>();
    std::string case_name = name + "/" + c.at("name").get<std::string>();
    std::string error;
    std::string got = render_case(source, c, &error);
    if (c.contains("error")) {
      EXPECT_FALSE(error.empty()) << case_name << ": jinja2 raised \""
                                  << c.at("error").get<std::string>()
                                  << "\" but we rendered: " << got;
    } else {
      EXPECT_EQ(error, "") << case_name;
      EXPECT_EQ(got, c.at("expected").get<std::string>()) << case_name;
    }
    ++checked;
  }
  return checked;
}

TEST(ChatGolden, SmolLM2) {
  EXPECT_GT(check_fixture("smollm2"), 0);
}
TEST(ChatGolden, Llama3) {
  EXPECT_GT(check_fixture("llama3"), 0);
}
TEST(ChatGolden, Llama3_1) {
  EXPECT_GT(check_fixture("llama3_1"), 0);
}
TEST(ChatGolden, Qwen3) {
  EXPECT_GT(check_fixture("qwen3"), 0);
}
TEST(ChatGolden, Gemma3) {
  EXPECT_GT(check_fixture("gemma3"), 0);
}
TEST(ChatGolden, Features) {
  EXPECT_GT(check_fixture("features"), 0);
}

// raise_exception's message reaches the caller.
TEST(ChatGolden, Gemma3RaiseMessage) {
  nlohmann::ordered_json fixture = load_fixture("gemma3");
  auto tmpl = ChatTemplate::parse(fixture.at("template").get<std::string>());
  ASSERT_TRUE(tmpl.is_ok()) << tmpl.error();
  nlohmann::ordered_json msgs = nlohmann::ordered_json::parse(
      R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])");
  auto out = tmpl->render_chat(msgs, true, "<bos>", "<eos>");
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.error().find("Conversation roles must alternate"), std::string::npos)
      << out.error();
}

}  // namespace
}  // namespace carpool::chat
