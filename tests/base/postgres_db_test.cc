// The PostgreSQL back end of base/sql.h against the suite's server
// (tests/testing/postgres.sh): placeholders, types, and what each kind of
// failure becomes.
#include "base/postgres_db.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace kvmart::postgres {
namespace {

std::string ServerUrl() {
  if (const char* env = std::getenv("KVMART_TEST_POSTGRES_URL")) return env;
  std::ifstream in(std::string(KVMART_BINARY_DIR) + "/testing/postgres/url");
  std::string url;
  in >> url;
  return url;
}

class PostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string url = ServerUrl();
    ASSERT_FALSE(url.empty()) << "no test PostgreSQL server (ctest starts one: tests/testing/postgres.sh)";
    auto c = Connection::Open(url);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    db_ = std::move(c).value();
    ASSERT_TRUE(db_->Exec("CREATE TEMP TABLE t(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                          "n BIGINT NOT NULL CHECK (n >= 0), s TEXT, b BYTEA)").ok());
  }
  std::unique_ptr<Connection> db_;
};

TEST(Placeholders, QuestionMarksOutsideQuotesAreNumbered) {
  int n = 0;
  EXPECT_EQ(NumberPlaceholders("SELECT ? , '?', \"?\", ?", &n), "SELECT $1 , '?', \"?\", $2");
  EXPECT_EQ(n, 2);
  EXPECT_TRUE(IsPostgresUrl("postgresql://u@127.0.0.1/db"));
  EXPECT_TRUE(IsPostgresUrl("postgres://127.0.0.1"));
  EXPECT_FALSE(IsPostgresUrl("/var/lib/kvmart/market.db"));
}

TEST_F(PostgresTest, RoundTripsIntegersTextBlobsAndNulls) {
  const std::string blob("\x00\x01\xff\x7f", 4);
  auto ins = db_->Prepare("INSERT INTO t(n, s, b) VALUES(?, ?, ?) RETURNING id");
  ASSERT_TRUE(ins.ok());
  (*ins)->Bind(1, int64_t{INT64_MAX}).Bind(2, "héllo").BindBlob(3, blob.data(), blob.size());
  ASSERT_TRUE((*ins)->Step().value());
  const int64_t id = (*ins)->Int(0);
  auto sel = db_->Prepare("SELECT n, s, b, NULL::BIGINT, (SELECT SUM(n) FROM t) FROM t WHERE id=?");
  ASSERT_TRUE(sel.ok());
  (*sel)->Bind(1, id);
  ASSERT_TRUE((*sel)->Step().value());
  EXPECT_EQ((*sel)->Int(0), INT64_MAX);
  EXPECT_EQ((*sel)->Text(1), "héllo");
  EXPECT_EQ((*sel)->Blob(2), blob);
  EXPECT_TRUE((*sel)->IsNull(3));
  EXPECT_EQ((*sel)->Int(4), INT64_MAX);  // SUM of BIGINT is NUMERIC
  EXPECT_FALSE((*sel)->Step().value());
}

TEST_F(PostgresTest, FailuresMapToTheirCodes) {
  // A constraint: FailedPrecondition, as SQLite's.
  auto neg = db_->Prepare("INSERT INTO t(n) VALUES(?)");
  ASSERT_TRUE(neg.ok());
  (*neg)->Bind(1, int64_t{-1});
  EXPECT_EQ((*neg)->Run().code(), Status::Code::kFailedPrecondition);
  // Text with a NUL byte cannot be sent: refused before the server sees it.
  auto nul = db_->Prepare("SELECT ?::TEXT");
  ASSERT_TRUE(nul.ok());
  (*nul)->Bind(1, std::string_view("a\0b", 3));
  EXPECT_EQ((*nul)->Run().code(), Status::Code::kInvalidArgument);
  // A data exception (bad input): InvalidArgument.
  auto bad = db_->Prepare("SELECT ?::BIGINT");
  ASSERT_TRUE(bad.ok());
  (*bad)->Bind(1, "not a number");
  EXPECT_EQ((*bad)->Run().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(db_->healthy());
}

TEST_F(PostgresTest, ASerialisationFailureIsRetryable) {
  auto other = Connection::Open(ServerUrl());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(db_->Exec("CREATE TABLE IF NOT EXISTS kvmart_ser_test(k INT PRIMARY KEY, v INT); "
                        "INSERT INTO kvmart_ser_test VALUES(1, 0) ON CONFLICT DO NOTHING").ok());
  ASSERT_TRUE(db_->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT v FROM kvmart_ser_test WHERE k=1").ok());
  ASSERT_TRUE((*other)->Exec("UPDATE kvmart_ser_test SET v=v+1 WHERE k=1").ok());
  Status s = db_->Exec("UPDATE kvmart_ser_test SET v=v+1 WHERE k=1");
  EXPECT_TRUE(sql::IsRetryable(s)) << s.ToString();
  EXPECT_TRUE(db_->Exec("ROLLBACK").ok());
  EXPECT_TRUE(db_->healthy());
}

TEST_F(PostgresTest, ASessionTheServerEndsIsUnavailableAndUnhealthy) {
  auto pid = db_->Prepare("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok() && (*pid)->Step().value());
  const int64_t backend = (*pid)->Int(0);
  pid->reset();
  auto other = Connection::Open(ServerUrl());
  ASSERT_TRUE(other.ok());
  auto kill = (*other)->Prepare("SELECT pg_terminate_backend(?::INT, 5000)");
  ASSERT_TRUE(kill.ok());
  (*kill)->Bind(1, backend);
  ASSERT_TRUE((*kill)->Run().ok());
  // The pool's check notices the hang-up before a transaction is tried.
  EXPECT_FALSE(db_->healthy());
  EXPECT_EQ(db_->Exec("SELECT 1").code(), Status::Code::kUnavailable);
}

TEST(PostgresOpen, AnUnreachableServerIsUnavailable) {
  // A loopback port nothing listens on (the discard port).
  auto c = Connection::Open("postgresql://postgres@127.0.0.1:9/none", 2);
  EXPECT_EQ(c.status().code(), Status::Code::kUnavailable) << c.status().ToString();
  EXPECT_EQ(Connection::Open("/not/a/url").status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvmart::postgres
