// Status and Result<T>: error values for untrusted-input boundaries (files, requests, templates).
// Internal invariants use CARPOOL_CHECK (util/check.h) instead.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace carpool {

// A success or a one-line error message. Cheap to copy when ok.
class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message) {
    Status s;
    s.ok_ = false;
    s.message_ = std::move(message);
    return s;
  }
  bool is_ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  bool ok_ = true;
  std::string message_;
};

// Either a value or an error Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}       // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {}  // NOLINT: must be an error status
  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<1>(v_); }
  const std::string& error() const { return std::get<1>(v_).message(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace carpool

// Propagate an error Status from an expression returning Status.
#define CARPOOL_RETURN_IF_ERROR(expr) \
  do {                                \
    ::carpool::Status _st = (expr);   \
    if (!_st.is_ok()) return _st;     \
  } while (0)

#define CARPOOL_CONCAT_INNER(a, b) a##b
#define CARPOOL_CONCAT(a, b) CARPOOL_CONCAT_INNER(a, b)
// Assign the value of a Result<T> expression to `lhs`, or return its error.
#define CARPOOL_ASSIGN_OR_RETURN(lhs, expr)                                                      \
  auto CARPOOL_CONCAT(_res_, __LINE__) = (expr);                                                 \
  if (!CARPOOL_CONCAT(_res_, __LINE__).is_ok()) return CARPOOL_CONCAT(_res_, __LINE__).status(); \
  lhs = std::move(CARPOOL_CONCAT(_res_, __LINE__)).value()
