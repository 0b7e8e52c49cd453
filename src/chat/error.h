// TemplateError: how the parser and interpreter abort on bad templates or data.
//
// Internal only: the public API (chat_template.h) catches it and returns a carpool::Status, so no
// exception crosses the library boundary. Exceptions keep the recursive-descent parser and the
// tree-walking interpreter readable; every throw carries a one-line message.
#pragma once

#include <string>
#include <utility>

namespace carpool::chat {

struct TemplateError {
  std::string message;
};

[[noreturn]] inline void fail(std::string message) {
  throw TemplateError{std::move(message)};
}

}  // namespace carpool::chat
