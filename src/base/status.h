// Status and StatusOr: the error-returning contract used by every kvmart module.
//
// Why not exceptions: a corrupt artifact, a truncated checkpoint or an overdrawn
// account is an expected outcome, not an exceptional one, and callers must be
// made to look at it. Errors carry a code (for HTTP mapping and tests), an
// optional subcode that refines it where callers must tell cases apart (as
// RocksDB's Status::SubCode does), and a message that names the file, tensor or
// field at fault. Callers decide on code() and subcode(), never on message text.
#pragma once

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
    kUnavailable,  // a back end (database, cluster) cannot be reached now; retry later
  };

  // Refinements of a code that callers act on differently. Each belongs to one
  // code (noted); a subcode never changes what code() reports.
  enum class SubCode {
    kNone = 0,
    kInsufficientFunds,  // kResourceExhausted: a balance cannot cover a charge
    kDiskFull,           // kResourceExhausted: the server's storage is full
    kDataLoss,           // kCorruption: stored bytes failed their checksum
    kKvPagesExhausted,   // kResourceExhausted: every KV page of the engine is in use
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
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status InsufficientFunds(std::string m) {
    return {Code::kResourceExhausted, SubCode::kInsufficientFunds, std::move(m)};
  }
  static Status DiskFull(std::string m) { return {Code::kResourceExhausted, SubCode::kDiskFull, std::move(m)}; }
  static Status DataLoss(std::string m) { return {Code::kCorruption, SubCode::kDataLoss, std::move(m)}; }
  static Status KvPagesExhausted(std::string m) {
    return {Code::kResourceExhausted, SubCode::kKvPagesExhausted, std::move(m)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  SubCode subcode() const { return subcode_; }
  bool IsInsufficientFunds() const { return subcode_ == SubCode::kInsufficientFunds; }
  bool IsDiskFull() const { return subcode_ == SubCode::kDiskFull; }
  bool IsDataLoss() const { return subcode_ == SubCode::kDataLoss; }
  bool IsKvPagesExhausted() const { return subcode_ == SubCode::kKvPagesExhausted; }
  const std::string& message() const { return message_; }
  // "Corruption: model.safetensors: tensor x: ..." — for logs and CLI output.
  std::string ToString() const;
  // Prefixes the message with context ("loading DIR: ") keeping code and subcode.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Status(Code c, SubCode sc, std::string m) : code_(c), subcode_(sc), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  SubCode subcode_ = SubCode::kNone;
  std::string message_;
};

const char* CodeName(Status::Code code);
const char* SubCodeName(Status::SubCode subcode);

namespace internal {
// Prints the status to stderr and aborts. Reading the value of a
// StatusOr that holds an error is a programming error; it must stop the
// program in every build type rather than read an empty optional.
[[noreturn]] void DieOnBadStatusOrAccess(const Status& s);
// The status a StatusOr gets when constructed from an Ok status (no value):
// an Internal error, so that the mistake is reported instead of hidden.
Status OkStatusWithoutValue();
}  // namespace internal

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status s)  // NOLINT
      : status_(s.ok() ? internal::OkStatusWithoutValue() : std::move(s)) {}
  StatusOr(T v) : value_(std::move(v)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // Checked in every build type: an error here aborts with the status printed.
  T& value() & { CheckOk(); return *value_; }
  const T& value() const& { CheckOk(); return *value_; }
  T&& value() && { CheckOk(); return std::move(*value_); }
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  void CheckOk() const {
    if (!ok()) internal::DieOnBadStatusOrAccess(status_);
  }
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
