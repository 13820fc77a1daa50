// Status and StatusOr: the error-returning contract used by every kvmart module.
//
// Why not exceptions: a corrupt artifact, a truncated checkpoint or an overdrawn
// account is an expected outcome, not an exceptional one, and callers must be
// made to look at it. Errors carry a code (for HTTP mapping and tests) and a
// message that names the file, tensor or field at fault.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kvmart {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,
    kNotFound,
    kCorruption,
    kIOError,
    kFailedPrecondition,
    kPermissionDenied,
    kUnauthenticated,
    kAlreadyExists,
    kResourceExhausted,
    kOutOfRange,
    kUnimplemented,
    kInternal,
    kAborted,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {Code::kOutOfRange, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status Aborted(std::string m) { return {Code::kAborted, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: model.safetensors: tensor x: ..." — for logs and CLI output.
  std::string ToString() const;
  // Prefixes the message with context ("loading DIR: ") keeping the code.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

const char* CodeName(Status::Code code);

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status s) : status_(std::move(s)) { assert(!status_.ok()); }  // NOLINT
  StatusOr(T v) : value_(std::move(v)) {}                                // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace kvmart

#define KVMART_CONCAT_INNER(a, b) a##b
#define KVMART_CONCAT(a, b) KVMART_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when expr is not ok.
#define KVMART_RETURN_IF_ERROR(expr)             \
  do {                                           \
    ::kvmart::Status _kvmart_st = (expr);        \
    if (!_kvmart_st.ok()) return _kvmart_st;     \
  } while (0)

#define KVMART_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

// KVMART_ASSIGN_OR_RETURN(auto x, MakeX()); returns the error status if any.
#define KVMART_ASSIGN_OR_RETURN(lhs, expr) \
  KVMART_ASSIGN_OR_RETURN_IMPL(KVMART_CONCAT(_kvmart_so_, __LINE__), lhs, expr)
