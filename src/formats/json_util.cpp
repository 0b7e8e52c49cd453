#include "formats/json_util.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

namespace carpool {

int json_nesting_depth(std::string_view text, int stop_above) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > stop_above) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

std::string quote_name(std::string_view s) {
  constexpr size_t kMax = 80;
  std::string out = "'";
  if (s.size() > kMax) {
    out.append(s.substr(0, kMax));
    out += "...";
  } else {
    out.append(s);
  }
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';  // keep the message on one line
  }
  return out + "'";
}

Status parse_json_strict(std::string_view text, int max_depth, std::string_view what,
                         nlohmann::json& out) {
  using Json = nlohmann::json;
  const std::string prefix(what);
  if (json_nesting_depth(text, max_depth) > max_depth) {
    return Status::error(prefix + ": JSON is nested more than " + std::to_string(max_depth) +
                         " levels deep");
  }
  std::vector<std::set<std::string>> keys_stack;  // one key set per open object
  std::string duplicate;
  bool found_duplicate = false;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      keys_stack.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      if (!keys_stack.empty()) keys_stack.pop_back();
    } else if (event == Json::parse_event_t::key && !found_duplicate && !keys_stack.empty() &&
               parsed.is_string()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys_stack.back().insert(key).second) {
        duplicate = key;
        found_duplicate = true;
      }
    }
    return true;
  };
  try {
    out = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                      /*ignore_comments=*/false);
  } catch (const Json::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    return Status::error(prefix + ": invalid JSON: " + msg);
  }
  if (found_duplicate) return Status::error(prefix + ": duplicate key " + quote_name(duplicate));
  return Status::ok();
}

}  // namespace carpool
