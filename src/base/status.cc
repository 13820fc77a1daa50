#include "base/status.h"

#include <cstdio>
#include <cstdlib>

namespace kvmart {

const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kInvalidArgument: return "InvalidArgument";
    case Status::Code::kNotFound: return "NotFound";
    case Status::Code::kCorruption: return "Corruption";
    case Status::Code::kIOError: return "IOError";
    case Status::Code::kFailedPrecondition: return "FailedPrecondition";
    case Status::Code::kPermissionDenied: return "PermissionDenied";
    case Status::Code::kUnauthenticated: return "Unauthenticated";
    case Status::Code::kAlreadyExists: return "AlreadyExists";
    case Status::Code::kResourceExhausted: return "ResourceExhausted";
    case Status::Code::kOutOfRange: return "OutOfRange";
    case Status::Code::kUnimplemented: return "Unimplemented";
    case Status::Code::kInternal: return "Internal";
    case Status::Code::kAborted: return "Aborted";
    case Status::Code::kUnavailable: return "Unavailable";
  }
  return "Unknown";
}

const char* SubCodeName(Status::SubCode subcode) {
  switch (subcode) {
    case Status::SubCode::kNone: return "";
    case Status::SubCode::kInsufficientFunds: return "InsufficientFunds";
    case Status::SubCode::kDiskFull: return "DiskFull";
    case Status::SubCode::kDataLoss: return "DataLoss";
    case Status::SubCode::kKvPagesExhausted: return "KvPagesExhausted";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out = CodeName(code_);
  if (subcode_ != SubCode::kNone) out += std::string("(") + SubCodeName(subcode_) + ")";
  return out + ": " + message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, subcode_, std::string(context) + ": " + message_);
}

namespace internal {

void DieOnBadStatusOrAccess(const Status& s) {
  std::fprintf(stderr, "fatal: value of a StatusOr that holds an error: %s\n", s.ToString().c_str());
  std::fflush(stderr);
  std::abort();
}

Status OkStatusWithoutValue() { return Status::Internal("StatusOr constructed from an Ok status without a value"); }

}  // namespace internal

}  // namespace kvmart
