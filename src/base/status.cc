#include "base/status.h"

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
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

}  // namespace kvmart
