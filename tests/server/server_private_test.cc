// Private artifacts over HTTP: to a tenant the publisher did not grant, every
// route answers about a private artifact exactly as about an id nobody
// published — listing, manifest, quote, purchase, kv.artifact with and without
// a key, kv.auto — and nothing is charged; a grant opens them all, a revocation
// closes them again.
#include <gtest/gtest.h>

#include "test_server.h"

namespace kvmart::testing {
namespace {

const json kDocument = json::array(
    {{{"role", "system"}, {"content", "You answer questions about the memo."}},
     {{"role", "user"},
      {"content", "Memo: the board meets on Thursday to approve the sale of the Porto warehouse for 4.2 million."}}});
const json kQuestion = json::array({{{"role", "user"}, {"content", "When does the board meet?"}}});
const std::string kNobody = "kv1-" + std::string(64, '0');

json Concat(const json& a, const json& b) {
  json out = a;
  for (const auto& x : b) out.push_back(x);
  return out;
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

bool Lists(const Reply& r, const std::string& id) {
  for (const auto& a : r.body["data"]) {
    if (a["artifact_id"] == id) return true;
  }
  return false;
}

class ServerPrivate : public ::testing::Test {
 protected:
  void SetUp() override {
    srv_ = std::make_unique<TestServer>(Models());
    pub_ = srv_->NewAccount("publisher", "publish");
    buyer_ = srv_->NewAccount("buyer", "buy", "1");
    Reply p = srv_->Post("/v1/artifacts",
                         {{"messages", kDocument}, {"visibility", "private"}, {"price", {{"per_load", "0.001"}}}},
                         pub_.key);
    ASSERT_EQ(p.status, 201) << p.text;
    EXPECT_EQ(p.body["listing"]["visibility"], "private");
    id_ = p.body["artifact_id"];
  }

  // What `key` gets from a route about `id`, with the id written as ID.
  std::pair<int, std::string> Ask(const std::string& method, const std::string& route, const json& body,
                                  const std::string& key, const std::string& id) {
    Reply r = srv_->Call(method, Replace(route, "ID", id), method == "GET" ? "" : body.dump(), key);
    return {r.status, Replace(r.text, id, "ID")};
  }

  json AutoUsage(const std::string& key, const json& messages) {
    Reply r = srv_->Post("/v1/chat/completions",
                         {{"messages", messages}, {"max_tokens", 2}, {"temperature", 0},
                          {"kv", {{"auto", true}, {"max_price", "0.01"}}}},
                         key);
    EXPECT_EQ(r.status, 200) << r.text;
    return r.body["kv_usage"];
  }

  std::unique_ptr<TestServer> srv_;
  TestServer::Account pub_, buyer_;
  std::string id_;
};

TEST_F(ServerPrivate, AnUngrantedTenantCannotTellAPrivateArtifactFromNone) {
  const int64_t before = srv_->BalanceMicros(buyer_.key);
  EXPECT_FALSE(Lists(srv_->Get("/v1/artifacts", buyer_.key), id_));
  EXPECT_TRUE(Lists(srv_->Get("/v1/artifacts", pub_.key), id_));

  const json chat = {{"messages", kQuestion}, {"max_tokens", 1}, {"kv", {{"artifact", "ID"}}}};
  struct Case {
    std::string method, route;
    json body;
    std::string key;
  };
  const std::vector<Case> cases = {
      {"GET", "/v1/artifacts/ID", nullptr, buyer_.key},
      {"POST", "/v1/artifacts/ID/quote", {{"kind", "metered"}, {"quantity", 1}}, buyer_.key},
      {"POST", "/v1/artifacts/ID/purchase", {{"kind", "metered"}, {"quantity", 1}}, buyer_.key},
      {"GET", "/v1/artifacts/ID/grants", nullptr, buyer_.key},
      {"POST", "/v1/chat/completions", chat, buyer_.key},
      {"POST", "/v1/chat/completions", chat, ""},  // no key: the HTTP 402 path
  };
  for (const Case& c : cases) {
    json body_private = json::parse(Replace(c.body.dump(), "ID", id_));
    json body_nobody = json::parse(Replace(c.body.dump(), "ID", kNobody));
    auto p = Ask(c.method, c.route, body_private, c.key, id_);
    auto n = Ask(c.method, c.route, body_nobody, c.key, kNobody);
    EXPECT_EQ(p, n) << c.method << " " << c.route << (c.key.empty() ? " (no key)" : "");
    EXPECT_GE(p.first, 400) << c.route << ": " << p.second;
  }
  // kv.auto: the private document as the prompt's prefix is no match at all.
  json usage = AutoUsage(buyer_.key, Concat(kDocument, kQuestion));
  json none = AutoUsage(buyer_.key, kQuestion);
  EXPECT_EQ(usage["reason"], none["reason"]) << usage.dump();
  EXPECT_TRUE(usage["artifact_id"].is_null());
  EXPECT_EQ(usage["tokens_reused"], 0);
  EXPECT_EQ(srv_->BalanceMicros(buyer_.key), before);  // nothing bought, nothing charged
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

TEST_F(ServerPrivate, AGrantOpensTheArtifactAndARevocationClosesItAgain) {
  Reply g = srv_->Post("/v1/artifacts/" + id_ + "/grants", {{"account", buyer_.id}}, pub_.key);
  ASSERT_EQ(g.status, 201) << g.text;
  Reply grants = srv_->Get("/v1/artifacts/" + id_ + "/grants", pub_.key);
  ASSERT_EQ(grants.status, 200) << grants.text;
  EXPECT_EQ(grants.body["accounts"], json::array({buyer_.id}));
  Reply list = srv_->Get("/v1/artifacts", buyer_.key);
  ASSERT_TRUE(Lists(list, id_)) << list.text;
  EXPECT_EQ(srv_->Get("/v1/artifacts/" + id_, buyer_.key).status, 200);

  // kv.auto now finds it, buys one load within budget and reuses it.
  const int64_t before = srv_->BalanceMicros(buyer_.key);
  json usage = AutoUsage(buyer_.key, Concat(kDocument, kQuestion));
  EXPECT_EQ(usage["artifact_id"], id_) << usage.dump();
  EXPECT_GT(usage["tokens_reused"].get<int64_t>(), 0);
  EXPECT_EQ(before - srv_->BalanceMicros(buyer_.key), 1000);

  Reply r = srv_->Call("DELETE", "/v1/artifacts/" + id_ + "/grants/" + std::to_string(buyer_.id), "", pub_.key);
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(srv_->Post("/v1/artifacts/" + id_ + "/quote", json::object(), buyer_.key).status, 404);
  // Another tenant never saw it, granted or not.
  TestServer::Account other = srv_->NewAccount("other", "buy", "1");
  EXPECT_FALSE(Lists(srv_->Get("/v1/artifacts", other.key), id_));
  // Only the publisher grants.
  EXPECT_EQ(srv_->Post("/v1/artifacts/" + id_ + "/grants", {{"account", other.id}}, other.key).status, 403);
  EXPECT_EQ(srv_->Post("/v1/artifacts/" + id_ + "/grants", {{"account", "x"}}, pub_.key).status, 400);
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

TEST_F(ServerPrivate, APublicRepublishMakesItVisibleToEveryone) {
  Reply p = srv_->Post("/v1/artifacts", {{"messages", kDocument}, {"visibility", "public"}}, pub_.key);
  ASSERT_EQ(p.status, 200) << p.text;  // already held: listed again, not prefilled
  EXPECT_EQ(p.body["listing"]["visibility"], "public");
  EXPECT_TRUE(Lists(srv_->Get("/v1/artifacts", buyer_.key), id_));
  EXPECT_EQ(srv_->Post("/v1/artifacts", {{"messages", kDocument}, {"visibility", "secret"}}, pub_.key).status, 400);
}

}  // namespace
}  // namespace kvmart::testing
