// Value: the dynamic value type of the chat-template engine, modelled on the Python objects that
// Jinja templates see (None, bool, int, float, str, list/tuple, dict, namespace, callables).
//
// Lists and dicts are shared (copying a Value copies a pointer) and never mutated after creation,
// except namespace attributes, which `{% set ns.attr = ... %}` assigns. Dicts keep insertion
// order, as Python dicts do. Not thread-safe: a Value belongs to one render.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carpool::chat {

class Value;
using ValueList = std::vector<Value>;

// Insertion-ordered mapping. Keys are Values (strings in practice); lookup is linear, which is
// fine for the small dicts that chat messages and tool schemas are.
struct ValueDict {
  std::vector<std::pair<Value, Value>> entries;

  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);  // replaces an existing key in place
};

// Arguments of a call: positional first, then keyword arguments in source order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// A callable: a built-in function, a bound method or a macro. Throws TemplateError on failure.
struct Callable {
  std::string name;
  std::function<Value(CallArgs&)> fn;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // a list or, with is_tuple(), a tuple
    kDict,
    kNamespace,  // jinja's namespace(): a mutable attribute bag
    kCallable,
  };

  Value() = default;  // undefined
  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double f);
  static Value string(std::string s);
  static Value list(ValueList items, bool is_tuple = false);
  static Value dict(ValueDict d);
  static Value namespace_object(ValueDict attrs);
  static Value callable(std::string name, std::function<Value(CallArgs&)> fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return int_; }  // kInt or kBool
  double as_double() const;                // any number
  const std::string& as_string() const { return str_; }
  const ValueList& as_list() const { return *list_; }
  const ValueDict& as_dict() const { return *dict_; }  // kDict or kNamespace
  ValueDict& mutable_namespace() { return *dict_; }
  const Callable& as_callable() const { return *fn_; }
  // The variable name an undefined value came from (for error messages).
  const std::string& undefined_name() const { return str_; }

  // Python truthiness.
  bool truthy() const;
  // Python's type name, for error messages ("str", "int", "dict", ...).
  std::string type_name() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool tuple_ = false;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;  // kString; the name of an undefined variable
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<const Callable> fn_;
};

// Python ==, across kinds (1 == 1.0 == True; lists and dicts compare element-wise).
// `depth` bounds recursion into nested containers; deeper structures compare unequal.
bool values_equal(const Value& a, const Value& b, int depth = 0);

}  // namespace carpool::chat
