// Status → HTTP mapping and the typed field readers, without a server.
#include "server/http_util.h"

#include <gtest/gtest.h>

namespace kvmart::server {
namespace {

TEST(HttpStatusFor, DecidesOnCodesAndSubcodesNeverOnMessageText) {
  EXPECT_EQ(HttpStatusFor(Status::InsufficientFunds("balance 0 < 1")).code, 402);
  EXPECT_EQ(HttpStatusFor(Status::DiskFull("catalog.sqlite")).code, 507);
  EXPECT_EQ(HttpStatusFor(Status::ResourceExhausted("server busy")).code, 429);
  // Words in a message do not change the status.
  EXPECT_EQ(HttpStatusFor(Status::ResourceExhausted("insufficient funds, says the text")).code, 429);
  EXPECT_EQ(HttpStatusFor(Status::ResourceExhausted("disk full: says the text")).code, 429);
  EXPECT_EQ(HttpStatusFor(Status::InsufficientFunds("x").WithContext("purchase")).code, 402);
  EXPECT_EQ(HttpStatusFor(Status::InvalidArgument("x")).code, 400);
  EXPECT_EQ(HttpStatusFor(Status::Unauthenticated("x")).code, 401);
  EXPECT_EQ(HttpStatusFor(Status::PermissionDenied("x")).code, 403);
  EXPECT_EQ(HttpStatusFor(Status::NotFound("x")).code, 404);
  EXPECT_EQ(HttpStatusFor(Status::DataLoss("x")).code, 500);
}

TEST(ParseMoneyField, OnlyDecimalStrings) {
  const market::Currency usd;
  auto ok = ParseMoneyField(json("0.0015"), usd, "price");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->micros(), 1500);
  for (const json& v : {json(0.0015), json(2), json(true), json(nullptr), json::array()}) {
    auto r = ParseMoneyField(v, usd, "price");
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << v.dump();
    EXPECT_NE(r.status().message().find("decimal string"), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(ParseMoneyField(json("1.2.3"), usd, "price").status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvmart::server
