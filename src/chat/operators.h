// Python/Jinja semantics of the expression operators: arithmetic, comparison, membership,
// iteration, attribute and item access (including the str and dict methods templates call).
// All functions throw TemplateError on type errors and respect the EvalContext budget.
#pragma once

#include <string>

#include "chat/eval_context.h"
#include "chat/value.h"

namespace carpool::chat {

// op in + - * / // % ** ~
Value binary_op(EvalContext& ctx, const std::string& op, const Value& a, const Value& b);
Value negate(const Value& v);
// op in == != < <= > >= in notin
bool compare_op(EvalContext& ctx, const std::string& op, const Value& a, const Value& b);
// Python a < b for sortable values; throws on incomparable kinds.
bool less_than(const Value& a, const Value& b);
// What `for x in v` visits: list items, dict keys, string characters; nothing for undefined.
ValueList iterate(const Value& v);
// Jinja getattr: attribute (methods of str/dict, namespace attributes), else item.
Value get_attr(EvalContext& ctx, const Value& obj, const std::string& name);
// Jinja getitem: item, else attribute for string keys. Missing -> undefined.
Value get_item(EvalContext& ctx, const Value& obj, const Value& key);
// obj[start:stop:step]; absent parts are undefined values.
Value slice(EvalContext& ctx, const Value& obj, const Value& start, const Value& stop,
            const Value& step);
// Calls a callable value.
Value call_value(EvalContext& ctx, const Value& fn, CallArgs& args);
// Throws the "'x' is undefined" error when v is undefined.
void require_defined(const Value& v);

}  // namespace carpool::chat
