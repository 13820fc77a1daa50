#include "base/status.h"

#include <gtest/gtest.h>

namespace kvmart {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Status Quarter(int x, int* out) {
  KVMART_ASSIGN_OR_RETURN(int h, Half(x));
  KVMART_ASSIGN_OR_RETURN(*out, Half(h));
  return Status::Ok();
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = Status::Corruption("bad header").WithContext("model.safetensors");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_EQ(s.ToString(), "Corruption: model.safetensors: bad header");
}

TEST(StatusTest, AssignOrReturnPropagates) {
  int q = 0;
  EXPECT_TRUE(Quarter(8, &q).ok());
  EXPECT_EQ(q, 2);
  Status s = Quarter(6, &q);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd: 3");
}

TEST(StatusTest, SubcodesSurviveContextAndKeepTheCode) {
  const Status funds = Status::InsufficientFunds("balance 1 < price 2").WithContext("purchase");
  EXPECT_EQ(funds.code(), Status::Code::kResourceExhausted);
  EXPECT_TRUE(funds.IsInsufficientFunds());
  EXPECT_FALSE(funds.IsDiskFull());
  EXPECT_EQ(funds.ToString(), "ResourceExhausted(InsufficientFunds): purchase: balance 1 < price 2");

  const Status full = Status::DiskFull("catalog.sqlite");
  EXPECT_EQ(full.code(), Status::Code::kResourceExhausted);
  EXPECT_TRUE(full.IsDiskFull());

  const Status lost = Status::DataLoss("block 3").WithContext("artifact a");
  EXPECT_EQ(lost.code(), Status::Code::kCorruption);
  EXPECT_TRUE(lost.IsDataLoss());

  // A message that merely mentions a case is not that case.
  EXPECT_FALSE(Status::ResourceExhausted("insufficient funds").IsInsufficientFunds());
  EXPECT_FALSE(Status::Corruption("data loss: x").IsDataLoss());
}

TEST(StatusTest, StatusOrFromOkStatusIsAnError) {
  StatusOr<int> v = Status::Ok();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Status::Code::kInternal);
}

// value() and operator* on an error must stop the program in every build
// type (these tests run in Release, where assert() is compiled out).
TEST(StatusDeathTest, ValueOfAnErrorAbortsWithTheStatus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        StatusOr<int> v = Half(3);
        volatile int x = v.value();
        (void)x;
      },
      "StatusOr that holds an error: InvalidArgument: odd: 3");
  EXPECT_DEATH(
      {
        StatusOr<std::string> v = Status::NotFound("no such artifact");
        volatile size_t n = (*v).size();
        (void)n;
      },
      "NotFound: no such artifact");
  EXPECT_DEATH(
      {
        StatusOr<std::string> v = Status::NotFound("gone");
        std::string s = std::move(v).value();
      },
      "NotFound: gone");
}

}  // namespace
}  // namespace kvmart
