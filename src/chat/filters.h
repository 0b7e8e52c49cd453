// Jinja built-in filters ({{ x | name(args) }}) and tests ({{ x is name(args) }}) that chat
// templates use, with Hugging Face's `tojson` (json.dumps, ensure_ascii=False, unsorted keys).
// Throw TemplateError for unknown names and bad arguments.
#pragma once

#include <string>

#include "chat/eval_context.h"
#include "chat/value.h"

namespace carpool::chat {

Value apply_filter(EvalContext& ctx, const std::string& name, const Value& subject, CallArgs& args);
bool apply_test(EvalContext& ctx, const std::string& name, const Value& subject, CallArgs& args);

}  // namespace carpool::chat
