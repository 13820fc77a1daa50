#include "base/sql.h"

namespace kvmart::sql {

Status Conflict(std::string_view detail) {
  return Status::Aborted(std::string(kRetryMessage) + ": " + std::string(detail));
}

bool IsRetryable(const Status& s) {
  return s.code() == Status::Code::kAborted && s.message().rfind(kRetryMessage, 0) == 0;
}

Status Statement::Run() {
  for (;;) {
    KVMART_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

Status WriteTxn::Begin() {
  KVMART_RETURN_IF_ERROR(c_->BeginWrite());
  open_ = true;
  return Status::Ok();
}

WriteTxn::~WriteTxn() {
  // A failed ROLLBACK leaves nothing to undo: the transaction is gone with
  // the session (PostgreSQL) or rolled back by the engine (SQLite).
  if (open_) (void)c_->Exec("ROLLBACK");
}

Status WriteTxn::Commit() {
  Status s = c_->Exec("COMMIT");
  if (s.ok()) open_ = false;
  return s;
}

Status ReadTxn::Begin() {
  KVMART_RETURN_IF_ERROR(c_->BeginRead());
  open_ = true;
  return Status::Ok();
}

ReadTxn::~ReadTxn() {
  if (open_) (void)c_->Exec("COMMIT");
}

}  // namespace kvmart::sql
