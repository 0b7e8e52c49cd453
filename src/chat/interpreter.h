// Interpreter: renders a parsed template (ast.h) against a context, inside the sandbox budget of
// RenderLimits. The template sees only the context's variables and the built-in globals
// (range, namespace, dict, raise_exception, strftime_now); it has no other access to the process.
#pragma once

#include <cstdint>
#include <string>

#include "chat/ast.h"
#include "chat/render_limits.h"
#include "chat/value.h"

namespace carpool::chat {

// Throws TemplateError on any template error or exceeded limit.
// `now_unix_s` is the time strftime_now() formats (UTC).
std::string render_body(const Body& body, const ValueDict& context, const RenderLimits& limits,
                        int64_t now_unix_s);

}  // namespace carpool::chat
