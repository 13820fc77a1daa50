#include "base/postgres_db.h"

#include <sys/socket.h>

#include <charconv>
#include <optional>
#include <vector>

namespace kvmart::postgres {

namespace {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

std::string Trimmed(const char* msg) {
  std::string s = msg == nullptr ? std::string() : std::string(msg);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Statement final : public sql::Statement {
 public:
  Statement(Connection* conn, std::string name, int params, const char* sql)
      : conn_(conn), name_(std::move(name)), sql_(sql), values_(params), is_null_(params, true),
        formats_(params, 0) {}

  using sql::Statement::Bind;
  sql::Statement& Bind(int i, int64_t v) override { return Set(i, std::to_string(v), 0); }
  sql::Statement& Bind(int i, std::string_view v) override {
    // A text parameter travels NUL-terminated; PostgreSQL text cannot hold NUL.
    if (v.find('\0') != std::string_view::npos) {
      bind_error_ = "text parameter " + std::to_string(i) + " contains a NUL byte";
      return *this;
    }
    return Set(i, std::string(v), 0);
  }
  sql::Statement& BindBlob(int i, const void* p, size_t n) override {
    return Set(i, std::string(static_cast<const char*>(p), n), 1);
  }
  sql::Statement& BindNull(int i) override {
    if (Valid(i)) is_null_[i - 1] = true;
    return *this;
  }

  StatusOr<bool> Step() override {
    if (!bind_error_.empty()) return Status::InvalidArgument(bind_error_);
    if (res_ == nullptr) {
      const int n = static_cast<int>(values_.size());
      std::vector<const char*> ptrs(n);
      std::vector<int> lengths(n);
      for (int i = 0; i < n; ++i) {
        ptrs[i] = is_null_[i] ? nullptr : values_[i].data();
        lengths[i] = static_cast<int>(values_[i].size());
      }
      res_.reset(PQexecPrepared(conn_->raw(), name_.c_str(), n, ptrs.data(), lengths.data(), formats_.data(), 0));
      const ExecStatusType st = res_ ? PQresultStatus(res_.get()) : PGRES_FATAL_ERROR;
      if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        Status err = conn_->Error(res_.get(), "step " + sql_.substr(0, 60));
        res_.reset();
        return err;
      }
      rows_ = PQntuples(res_.get());
      const char* changed = PQcmdTuples(res_.get());
      changes_ = (changed != nullptr && *changed != '\0') ? std::stoll(changed) : 0;
      row_ = -1;
    }
    if (row_ + 1 >= rows_) {
      row_ = rows_;
      return false;
    }
    ++row_;
    return true;
  }

  int64_t Changes() const override { return changes_; }

  int64_t Int(int col) const override {
    const char* v = Cell(col);
    if (v == nullptr) return 0;
    int64_t out = 0;
    std::string_view s(v);
    // SUM() of BIGINT is NUMERIC; an integral NUMERIC prints without a point.
    std::from_chars(s.data(), s.data() + s.size(), out);
    return out;
  }
  bool IsNull(int col) const override { return Cell(col) == nullptr; }
  std::string Text(int col) const override {
    const char* v = Cell(col);
    return v == nullptr ? std::string() : std::string(v, static_cast<size_t>(PQgetlength(res_.get(), row_, col)));
  }
  // bytea in text form is "\x" followed by hex digits (bytea_output = hex, the default).
  std::string Blob(int col) const override {
    std::string t = Text(col);
    if (t.size() < 2 || t[0] != '\\' || t[1] != 'x') return t;
    std::string out;
    out.reserve((t.size() - 2) / 2);
    for (size_t i = 2; i + 1 < t.size(); i += 2) {
      const int hi = HexValue(t[i]), lo = HexValue(t[i + 1]);
      if (hi < 0 || lo < 0) return std::string();
      out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return out;
  }

 private:
  bool Valid(int i) {
    if (i >= 1 && i <= static_cast<int>(values_.size())) return true;
    bind_error_ = "parameter " + std::to_string(i) + " out of range for: " + sql_.substr(0, 60);
    return false;
  }
  sql::Statement& Set(int i, std::string v, int format) {
    if (!Valid(i)) return *this;
    values_[i - 1] = std::move(v);
    is_null_[i - 1] = false;
    formats_[i - 1] = format;
    return *this;
  }
  const char* Cell(int col) const {
    if (res_ == nullptr || row_ < 0 || row_ >= rows_ || col < 0 || col >= PQnfields(res_.get())) return nullptr;
    if (PQgetisnull(res_.get(), row_, col)) return nullptr;
    return PQgetvalue(res_.get(), row_, col);
  }

  Connection* conn_;
  std::string name_, sql_;
  std::vector<std::string> values_;
  std::vector<bool> is_null_;
  std::vector<int> formats_;
  std::string bind_error_;
  Result res_;
  int rows_ = 0, row_ = -1;
  int64_t changes_ = 0;
};

}  // namespace

bool IsPostgresUrl(std::string_view s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

std::string RedactUrl(const std::string& location) {
  if (!IsPostgresUrl(location)) return location;
  const size_t scheme = location.find("://") + 3;
  const size_t at = location.find('@', scheme);
  const size_t colon = location.find(':', scheme);
  std::string out = location;
  if (at != std::string::npos && colon != std::string::npos && colon < at) {
    out = location.substr(0, colon + 1) + "***" + location.substr(at);
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    const size_t end = out.find('&', p);
    out.replace(p + 9, (end == std::string::npos ? out.size() : end) - (p + 9), "***");
  }
  return out;
}

std::string NumberPlaceholders(std::string_view sql, int* count) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  char quote = 0;
  for (char c : sql) {
    if (quote != 0) {
      if (c == quote) quote = 0;
      out.push_back(c);
    } else if (c == '\'' || c == '"') {
      quote = c;
      out.push_back(c);
    } else if (c == '?') {
      out += "$" + std::to_string(++n);
    } else {
      out.push_back(c);
    }
  }
  if (count != nullptr) *count = n;
  return out;
}

StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& url, int connect_timeout_s) {
  if (!IsPostgresUrl(url)) return Status::InvalidArgument("not a PostgreSQL URL (postgresql://…): " + url);
  const std::string timeout = std::to_string(connect_timeout_s);
  const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
  const char* values[] = {url.c_str(), timeout.c_str(), "kvmart", nullptr};
  std::unique_ptr<PGconn, PgConnDeleter> conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  if (conn == nullptr) return Status::ResourceExhausted("libpq could not allocate a connection");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Unavailable("cannot connect to PostgreSQL: " + Trimmed(PQerrorMessage(conn.get())));
  }
  // NOTICEs ("relation already exists, skipping") are not errors and would
  // otherwise be printed on stderr by libpq.
  PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
  auto c = std::make_unique<Connection>(std::move(conn));
  KVMART_RETURN_IF_ERROR(c->Exec("SET client_min_messages = warning"));
  return c;
}

bool Connection::healthy() const {
  if (broken_) return false;
  // Reads whatever the server sent while the connection sat idle, without
  // blocking: a server that restarted or killed this session has sent its
  // FATAL notice and closed the socket, and the connection turns bad here,
  // before a transaction is tried on it.
  if (PQconsumeInput(conn_.get()) == 0) broken_ = true;
  // The FATAL notice may be consumed above with the end of the stream still
  // unread: a peek that reads 0 bytes is the server's close.
  if (!broken_) {
    char byte = 0;
    const int fd = PQsocket(conn_.get());
    if (fd < 0 || ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) broken_ = true;
  }
  return !broken_ && PQstatus(conn_.get()) == CONNECTION_OK;
}

Status Connection::Error(const PGresult* res, std::string_view what) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg = std::string(what) + ": " +
                    Trimmed(res != nullptr && *PQresultErrorMessage(res) != '\0' ? PQresultErrorMessage(res)
                                                                                 : PQerrorMessage(conn_.get()));
  const std::string_view code = state != nullptr ? state : "";
  if (PQstatus(conn_.get()) != CONNECTION_OK || code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0) {
    broken_ = true;
    return Status::Unavailable("PostgreSQL connection lost: " + msg);
  }
  if (code == "40001" || code == "40P01") return sql::Conflict(msg);
  // Constraints and trigger RAISEs: the same code SQLite gives them.
  if (code.rfind("23", 0) == 0 || code == "P0001") return Status::FailedPrecondition("constraint violated: " + msg);
  // Data exceptions (bad encoding, out-of-range number): the input was bad.
  if (code.rfind("22", 0) == 0) return Status::InvalidArgument(msg);
  if (code == "53100") return Status::DiskFull("disk full: " + msg);
  if (code.rfind("53", 0) == 0) return Status::ResourceExhausted(msg);
  if (code.rfind("42", 0) == 0 || code.rfind("25", 0) == 0) return Status::Internal(msg);
  return Status::IOError(msg);
}

Status Connection::Exec(std::string_view sql) {
  const std::string text(sql);
  Result res(PQexec(conn_.get(), text.c_str()));
  const ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error(res.get(), "exec " + text.substr(0, 60));
  return Status::Ok();
}

StatusOr<std::unique_ptr<sql::Statement>> Connection::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    Prepared p;
    p.name = "k" + std::to_string(cache_.size());
    const std::string text = NumberPlaceholders(sql, &p.params);
    Result res(PQprepare(conn_.get(), p.name.c_str(), text.c_str(), 0, nullptr));
    if (res == nullptr || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      return Error(res.get(), std::string("prepare ") + std::string(sql).substr(0, 60));
    }
    it = cache_.emplace(sql, std::move(p)).first;
  }
  return std::unique_ptr<sql::Statement>(
      std::make_unique<Statement>(this, it->second.name, it->second.params, sql));
}

}  // namespace kvmart::postgres
