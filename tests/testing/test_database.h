// A throw-away database for one test, on either back end of base/sql.h: the
// market and store suites run once per back end (CTest registers both runs).
// On PostgreSQL each test gets a schema of its own on the suite's server
// (tests/testing/postgres.sh), dropped when it ends.
#pragma once

#include <sodium.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "base/postgres_db.h"
#include "base/sqlite_db.h"
#include "testing/temp_dir.h"

namespace kvmart::testing {

enum class Backend { kSqlite, kPostgres };

// The back end a suite runs on: $<variable> = "postgres", else SQLite.
inline Backend BackendFromEnv(const char* variable) {
  const char* b = std::getenv(variable);
  return b != nullptr && std::string_view(b) == "postgres" ? Backend::kPostgres : Backend::kSqlite;
}

// The suite's PostgreSQL server: $KVMART_TEST_POSTGRES_URL, else the URL that
// tests/testing/postgres.sh wrote into the build tree. Its absence is an error,
// never a skip.
inline StatusOr<std::string> TestPostgresUrl() {
  const char* env = std::getenv("KVMART_TEST_POSTGRES_URL");
  if (env != nullptr && *env != '\0') return std::string(env);
  const std::string file = std::string(KVMART_BINARY_DIR) + "/testing/postgres/url";
  std::ifstream in(file);
  std::string url;
  if (!(in >> url) || url.empty()) {
    return Status::Unavailable("no test PostgreSQL server: " + file +
                               " is missing (ctest starts one through tests/testing/postgres.sh; or set "
                               "KVMART_TEST_POSTGRES_URL)");
  }
  return url;
}

// One database for one test: a file in the test's temp directory (SQLite) or
// a schema of its own on the suite's server (PostgreSQL), dropped at the end.
class TestDatabase {
 public:
  static StatusOr<std::unique_ptr<TestDatabase>> Create(const TempDir& dir, Backend backend) {
    auto db = std::unique_ptr<TestDatabase>(new TestDatabase());
    db->backend_ = backend;
    if (backend == Backend::kSqlite) {
      db->location_ = dir.Sub("market.db");
      return db;
    }
    KVMART_ASSIGN_OR_RETURN(db->server_url_, TestPostgresUrl());
    KVMART_ASSIGN_OR_RETURN(db->admin_, postgres::Connection::Open(db->server_url_));
    unsigned char r[6];
    randombytes_buf(r, sizeof r);
    db->schema_ = "t" + std::to_string(::getpid()) + "_";
    for (unsigned char c : r) db->schema_ += "0123456789abcdef"[c >> 4], db->schema_ += "0123456789abcdef"[c & 15];
    KVMART_RETURN_IF_ERROR(db->admin_->Exec("CREATE SCHEMA " + db->schema_));
    db->location_ = db->server_url_ + "?options=-csearch_path%3D" + db->schema_;
    return db;
  }
  ~TestDatabase() {
    if (admin_ != nullptr && admin_->healthy()) (void)admin_->Exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
  }

  Backend backend() const { return backend_; }
  const std::string& location() const { return location_; }

  // Empty again, as if just created.
  Status Recreate() {
    if (backend_ == Backend::kSqlite) {
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(location_ + suffix, ec);
      return Status::Ok();
    }
    KVMART_RETURN_IF_ERROR(admin_->Exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE"));
    return admin_->Exec("CREATE SCHEMA " + schema_);
  }

  // A connection beside the market's, to read or tamper with the tables.
  StatusOr<std::unique_ptr<sql::Connection>> Raw() const {
    if (backend_ == Backend::kSqlite) {
      KVMART_ASSIGN_OR_RETURN(auto c, sqlite::Connection::Open(location_, false, 1000));
      return std::unique_ptr<sql::Connection>(std::move(c));
    }
    KVMART_ASSIGN_OR_RETURN(auto c, postgres::Connection::Open(location_));
    return std::unique_ptr<sql::Connection>(std::move(c));
  }

 private:
  TestDatabase() = default;
  Backend backend_ = Backend::kSqlite;
  std::string location_, server_url_, schema_;
  std::unique_ptr<postgres::Connection> admin_;
};

}  // namespace kvmart::testing
