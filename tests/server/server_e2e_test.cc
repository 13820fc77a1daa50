// End to end over HTTP on loopback: publish → purchase → ask with kv.artifact,
// bit-identical to asking without it; money moves exactly the quoted price; the
// receipt verifies offline; and the same checks for streaming, sampling,
// completions and kv.auto.
#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "market/receipts.h"
#include "test_server.h"

namespace kvmart::testing {
namespace {

const json kPrefix = json::array({{{"role", "system"}, {"content", "You are a careful reader."}},
                                  {{"role", "user"},
                                   {"content", "Document: The river Mira rises in the hills, runs 140 km west and "
                                               "reaches the sea at Vila Nova. Its valley grows cork oaks, olives "
                                               "and vines; the town of Odemira sits on its banks."}}});
const json kQuestion = json::array({{{"role", "user"}, {"content", "How long is the river?"}}});

json Concat(const json& a, const json& b) {
  json out = a;
  for (const auto& x : b) out.push_back(x);
  return out;
}

// Concatenates the deltas of an SSE body and returns the final chunk.
std::pair<std::string, json> ReadSse(const std::string& body, bool chat) {
  std::string text;
  json last;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string payload = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") break;
    json j = json::parse(payload);
    if (!j["choices"].empty()) {
      const json& c = j["choices"][0];
      if (chat && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
      if (!chat) text += c["text"].get<std::string>();
      if (!c["finish_reason"].is_null()) last = j;
    }
  }
  return {text, last};
}

class ServerE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    srv_ = std::make_unique<TestServer>(Models());
    pub_ = srv_->NewAccount("publisher", "publish");
    buyer_ = srv_->NewAccount("buyer", "buy", "5");
  }
  // Publishes the chat prefix at a fixed price and returns the response.
  json Publish(const json& body) {
    Reply r = srv_->Post("/v1/artifacts", body, pub_.key);
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.text;
    return r.body;
  }
  std::unique_ptr<TestServer> srv_;
  TestServer::Account pub_, buyer_;
};

TEST_F(ServerE2E, PublishBuyAskIsBitExactAndChargesTheQuote) {
  json pub = Publish({{"messages", kPrefix}, {"title", "Mira"}, {"price", {{"per_load", "0.002"}}}});
  const std::string id = pub["artifact_id"];
  const int64_t doc_tokens = pub["tokens"];
  ASSERT_GT(doc_tokens, 20);

  Reply q = srv_->Post("/v1/artifacts/" + id + "/quote", {{"kind", "metered"}, {"quantity", 2}}, buyer_.key);
  ASSERT_EQ(q.status, 200) << q.text;
  const int64_t per_load = q.body["per_load"]["micros"];
  EXPECT_EQ(per_load, 2000);

  const int64_t buyer0 = srv_->BalanceMicros(buyer_.key), pub0 = srv_->BalanceMicros(pub_.key);
  Reply p = srv_->Post("/v1/artifacts/" + id + "/purchase", {{"kind", "metered"}, {"quantity", 2}}, buyer_.key,
                       {{"Idempotency-Key", "buy-1"}});
  ASSERT_EQ(p.status, 201) << p.text;
  // A retried purchase with the same key replays the same receipt.
  Reply p2 = srv_->Post("/v1/artifacts/" + id + "/purchase", {{"kind", "metered"}, {"quantity", 2}}, buyer_.key,
                        {{"Idempotency-Key", "buy-1"}});
  ASSERT_EQ(p2.status, 201);
  EXPECT_EQ(p2.body["receipt"], p.body["receipt"]);

  json ask = {{"model", "kvmart"}, {"messages", kQuestion}, {"max_tokens", 12}, {"temperature", 0},
              {"kvmart_debug", true}, {"kv", {{"artifact", id}}}};
  Reply hit = srv_->Post("/v1/chat/completions", ask, buyer_.key);
  ASSERT_EQ(hit.status, 200) << hit.text;
  json cold_req = {{"model", "kvmart"}, {"messages", Concat(kPrefix, kQuestion)}, {"max_tokens", 12},
                   {"temperature", 0}, {"kvmart_debug", true}};
  Reply cold = srv_->Post("/v1/chat/completions", cold_req, buyer_.key);
  ASSERT_EQ(cold.status, 200) << cold.text;

  // Same prompt, same tokens, same logits bits at every step.
  EXPECT_EQ(hit.body["kvmart_debug"]["prompt_token_ids"], cold.body["kvmart_debug"]["prompt_token_ids"]);
  EXPECT_EQ(hit.body["kvmart_debug"]["completion_token_ids"], cold.body["kvmart_debug"]["completion_token_ids"]);
  EXPECT_EQ(hit.body["kvmart_debug"]["logits_sha256"], cold.body["kvmart_debug"]["logits_sha256"]);
  EXPECT_EQ(hit.body["kvmart_debug"]["logits_sha256"].size(), 12u);
  EXPECT_EQ(hit.body["choices"][0]["message"]["content"], cold.body["choices"][0]["message"]["content"]);
  EXPECT_EQ(hit.body["usage"]["prompt_tokens_details"]["cached_tokens"], doc_tokens);
  EXPECT_EQ(cold.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(hit.body["usage"]["prompt_tokens"], cold.body["usage"]["prompt_tokens"]);

  const json& ku = hit.body["kv_usage"];
  EXPECT_EQ(ku["artifact_id"], id);
  EXPECT_EQ(ku["tokens_reused"], doc_tokens);
  EXPECT_EQ(ku["price"]["micros"], per_load);
  EXPECT_GT(ku["prefill_cost_avoided"]["micros"].get<int64_t>(), 0);

  // The ledger moved exactly the quoted price: buyer −price, publisher +(price − fee).
  EXPECT_EQ(buyer0 - srv_->BalanceMicros(buyer_.key), per_load);
  EXPECT_EQ(srv_->BalanceMicros(pub_.key) - pub0, per_load - q.body["provider_fee"]["micros"].get<int64_t>());
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());

  // The receipt verifies offline against the published provider key, and the
  // server hands it back by id to its owner only.
  Reply pk = srv_->Get("/v1/provider/key");
  ASSERT_EQ(pk.status, 200);
  const std::string receipt = market::CanonicalJson(ku["receipt"]);
  auto verified = market::VerifyReceipt(receipt, pk.body["receipt_public_key"].get<std::string>());
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(verified->kind, "load");
  EXPECT_EQ(verified->price_micros, per_load);
  EXPECT_EQ(verified->tokens_reused, doc_tokens);
  const std::string rid = ku["receipt"]["receipt_id"];
  Reply got = srv_->Get("/v1/receipts/" + rid, buyer_.key);
  ASSERT_EQ(got.status, 200) << got.text;
  EXPECT_EQ(got.body["receipt"], ku["receipt"]);
  Reply other = srv_->Get("/v1/receipts/" + rid, pub_.key);
  Reply missing = srv_->Get("/v1/receipts/rcpt-nope", pub_.key);
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(other.text, missing.text);

  // One load left, then the entitlement is exhausted.
  Reply e = srv_->Get("/v1/entitlements", buyer_.key);
  ASSERT_EQ(e.status, 200);
  EXPECT_EQ(e.body["data"][0]["loads_remaining"], 1);
}

TEST_F(ServerE2E, StreamingSampledAndCompletionsMatchColdPrefill) {
  json pub = Publish({{"messages", kPrefix}});
  const std::string id = pub["artifact_id"];
  ASSERT_EQ(srv_->Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 10}}, buyer_.key).status, 201);

  // Sampled with a seed: identical with and without the artifact, streamed or not.
  json base = {{"messages", kQuestion}, {"max_tokens", 10}, {"temperature", 0.8}, {"top_p", 0.9}, {"seed", 42}};
  json hit = base;
  hit["kv"] = {{"artifact", id}};
  json cold = base;
  cold["messages"] = Concat(kPrefix, kQuestion);
  Reply a = srv_->Post("/v1/chat/completions", hit, buyer_.key);
  Reply b = srv_->Post("/v1/chat/completions", cold, buyer_.key);
  ASSERT_EQ(a.status, 200) << a.text;
  ASSERT_EQ(b.status, 200) << b.text;
  EXPECT_EQ(a.body["choices"][0]["message"]["content"], b.body["choices"][0]["message"]["content"]);

  hit["stream"] = true;
  hit["stream_options"] = {{"include_usage", true}};
  Reply s = srv_->Post("/v1/chat/completions", hit, buyer_.key);
  ASSERT_EQ(s.status, 200) << s.text;
  auto [text, last] = ReadSse(s.text, true);
  EXPECT_EQ(text, a.body["choices"][0]["message"]["content"]);
  EXPECT_EQ(last["kv_usage"]["artifact_id"], id);
  EXPECT_NE(s.text.find("\"cached_tokens\":" + std::to_string(pub["tokens"].get<int>())), std::string::npos);
  EXPECT_NE(s.text.find("data: [DONE]"), std::string::npos);

  // /v1/completions over a token artifact: prompt ids continue the document.
  json tpub = Publish({{"tokens", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}}});
  const std::string tid = tpub["artifact_id"];
  ASSERT_EQ(srv_->Post("/v1/artifacts/" + tid + "/purchase", {{"quantity", 2}}, buyer_.key).status, 201);
  Reply c1 = srv_->Post("/v1/completions",
                        {{"prompt", {100, 200, 300}}, {"max_tokens", 6}, {"temperature", 0}, {"kvmart_debug", true},
                         {"kv", {{"artifact", tid}}}},
                        buyer_.key);
  Reply c2 = srv_->Post("/v1/completions",
                        {{"prompt", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 100, 200, 300}},
                         {"max_tokens", 6}, {"temperature", 0}, {"kvmart_debug", true}},
                        buyer_.key);
  ASSERT_EQ(c1.status, 200) << c1.text;
  ASSERT_EQ(c2.status, 200) << c2.text;
  EXPECT_EQ(c1.body["kvmart_debug"]["logits_sha256"], c2.body["kvmart_debug"]["logits_sha256"]);
  EXPECT_EQ(c1.body["choices"][0]["text"], c2.body["choices"][0]["text"]);
  EXPECT_EQ(c1.body["usage"]["prompt_tokens_details"]["cached_tokens"], 13);

  // Stop strings cut the text and end with finish_reason "stop".
  // The stop string is the text's second character (whole UTF-8 sequences).
  const std::string full = c2.body["choices"][0]["text"];
  auto next_char = [&](size_t i) {
    do ++i; while (i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80);
    return i;
  };
  const size_t c1_end = next_char(0);
  ASSERT_LT(c1_end, full.size()) << "the continuation needs two characters for the stop-string check: " << full;
  {
    const std::string stop = full.substr(c1_end, next_char(c1_end) - c1_end);
    Reply st = srv_->Post("/v1/completions",
                          {{"prompt", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 100, 200, 300}},
                           {"max_tokens", 6}, {"temperature", 0}, {"stop", stop}},
                          buyer_.key);
    ASSERT_EQ(st.status, 200) << st.text;
    EXPECT_EQ(st.body["choices"][0]["text"], full.substr(0, full.find(stop)));
    EXPECT_EQ(st.body["choices"][0]["finish_reason"], "stop");
  }
}

// A tokenizer.json whose vocabulary stops at id `keep` (added tokens kept):
// every generated id in [keep, first added id) then has no text, as a model's
// padded embedding rows have none. Merges that need a dropped token go too.
std::string TrimmedTokenizer(const std::string& dir, int keep) {
  std::ifstream in(std::string(KVMART_DATA_DIR) + "/tokenizer.json", std::ios::binary);
  json j = json::parse(in);
  json vocab = json::object();
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    if (it.value().get<int>() < keep) vocab[it.key()] = it.value();
  }
  json merges = json::array();
  for (const json& m : j["model"]["merges"]) {
    const std::string a = m[0], b = m[1];
    if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
  }
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  const std::string path = dir + "/trimmed-tokenizer.json";
  std::ofstream(path, std::ios::binary) << j.dump();
  return path;
}

// Sampling draws from every row of the model's embedding; an id the tokenizer
// has no text for must not fail the request, streamed or not.
TEST(ServerTokensWithoutText, GeneratedIdsWithoutTextDoNotFailTheRequest) {
  TempDir tmp;
  constexpr int kKeep = 20000;
  TestServer srv(Models(), {}, nullptr, TrimmedTokenizer(tmp.path(), kKeep));
  auto buyer = srv.NewAccount("buyer", "buy", "1");
  const json ask = {{"prompt", {100, 200, 300}}, {"max_tokens", 12}, {"temperature", 0}, {"kvmart_debug", true}};
  Reply r = srv.Post("/v1/completions", ask, buyer.key);
  ASSERT_EQ(r.status, 200) << r.text;
  const json& ids = r.body["kvmart_debug"]["completion_token_ids"];
  size_t without_text = 0;
  for (const json& id : ids) without_text += id.get<int>() >= kKeep && id.get<int>() < 151643;
  EXPECT_GT(without_text, 0u) << "no generated id lacked text, so this checks nothing: " << ids.dump();
  EXPECT_EQ(r.body["usage"]["completion_tokens"], ids.size());

  json streamed = ask;
  streamed["stream"] = true;
  Reply s = srv.Post("/v1/completions", streamed, buyer.key);
  ASSERT_EQ(s.status, 200) << s.text;
  EXPECT_EQ(s.text.find("\"error\""), std::string::npos) << s.text;
  EXPECT_NE(s.text.find("data: [DONE]"), std::string::npos) << s.text;
  auto [text, last] = ReadSse(s.text, false);
  EXPECT_EQ(text, r.body["choices"][0]["text"]);
}

// Store administration: only admin keys may remove artifacts or set quotas;
// a removed artifact is gone from the catalog and a buyer's load of it is
// refunded; a publisher over quota cannot publish, and quota 0 lifts it.
TEST_F(ServerE2E, AdminRemovesArtifactsAndSetsPublisherQuotas) {
  json pub = Publish({{"text", "A document the provider will take down."}});
  const std::string id = pub["artifact_id"];
  ASSERT_EQ(srv_->Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 2}}, buyer_.key).status, 201);

  EXPECT_EQ(srv_->Call("DELETE", "/v1/artifacts/" + id, "", buyer_.key).status, 403);
  EXPECT_EQ(srv_->Call("DELETE", "/v1/artifacts/" + id, "", "").status, 401);
  Reply rm = srv_->Call("DELETE", "/v1/artifacts/" + id, "", srv_->admin_key());
  ASSERT_EQ(rm.status, 200) << rm.text;
  EXPECT_EQ(rm.body["removed"], true);
  EXPECT_EQ(rm.body["unlisted"], true);
  EXPECT_EQ(srv_->Get("/v1/artifacts/" + id, buyer_.key).status, 404);
  // Off the market: neither quoted nor sold, so nobody pays for what cannot load.
  EXPECT_EQ(srv_->Post("/v1/artifacts/" + id + "/quote", {{"quantity", 1}}, buyer_.key).status, 404);
  const int64_t before_buy = srv_->BalanceMicros(buyer_.key);
  EXPECT_EQ(srv_->Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 1}}, buyer_.key).status, 404);
  EXPECT_EQ(srv_->BalanceMicros(buyer_.key), before_buy);
  EXPECT_EQ(srv_->Call("DELETE", "/v1/artifacts/" + id, "", srv_->admin_key()).status, 404);
  const int64_t before = srv_->BalanceMicros(buyer_.key);
  Reply ask = srv_->Post("/v1/chat/completions",
                         {{"messages", kQuestion}, {"max_tokens", 2}, {"kv", {{"artifact", id}}}}, buyer_.key);
  EXPECT_NE(ask.status, 200) << ask.text;
  EXPECT_EQ(srv_->BalanceMicros(buyer_.key), before) << "a load of a removed artifact must not be charged";

  // Artifacts built by the server are signed with its artifact key.
  const std::string publisher = srv_->Get("/v1/provider/key").body["artifact_public_key"];
  const std::string quota = "/v1/publishers/" + publisher + "/quota";
  EXPECT_EQ(srv_->Call("PUT", quota, R"({"bytes": 1})", pub_.key).status, 403);
  EXPECT_EQ(srv_->Call("PUT", quota, R"({"bytes": -1})", srv_->admin_key()).status, 400);
  EXPECT_EQ(srv_->Call("PUT", quota, "{}", srv_->admin_key()).status, 400);
  Reply q = srv_->Call("PUT", quota, R"({"bytes": 1})", srv_->admin_key());
  ASSERT_EQ(q.status, 200) << q.text;
  EXPECT_EQ(q.body["quota_bytes"], 1);
  Reply over = srv_->Post("/v1/artifacts", {{"text", "Another document, over the quota."}}, pub_.key);
  EXPECT_EQ(over.status, 429) << over.text;
  ASSERT_EQ(srv_->Call("PUT", quota, R"({"bytes": 0})", srv_->admin_key()).status, 200);
  EXPECT_EQ(srv_->Post("/v1/artifacts", {{"text", "Another document, over the quota."}}, pub_.key).status, 201);
}

TEST_F(ServerE2E, AutoFindsThePublishedPrefixAndBuysOneLoadWithinBudget) {
  json pub = Publish({{"messages", kPrefix}, {"price", {{"per_load", "0.001"}}}});
  const std::string id = pub["artifact_id"];
  json req = {{"messages", Concat(kPrefix, kQuestion)}, {"max_tokens", 4}, {"temperature", 0},
              {"kvmart_debug", true}};
  Reply cold = srv_->Post("/v1/chat/completions", req, buyer_.key);
  req["kv"] = {{"auto", true}, {"max_price", "0.0005"}};
  Reply over = srv_->Post("/v1/chat/completions", req, buyer_.key);
  ASSERT_EQ(over.status, 200) << over.text;
  EXPECT_EQ(over.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_TRUE(over.body["kv_usage"]["artifact_id"].is_null());
  const int64_t b0 = srv_->BalanceMicros(buyer_.key);
  req["kv"] = {{"auto", true}, {"max_price", "0.001"}};
  Reply hit = srv_->Post("/v1/chat/completions", req, buyer_.key);
  ASSERT_EQ(hit.status, 200) << hit.text;
  EXPECT_EQ(hit.body["kv_usage"]["artifact_id"], id);
  EXPECT_EQ(hit.body["usage"]["prompt_tokens_details"]["cached_tokens"], pub["tokens"]);
  EXPECT_EQ(hit.body["kvmart_debug"]["logits_sha256"], cold.body["kvmart_debug"]["logits_sha256"]);
  EXPECT_EQ(b0 - srv_->BalanceMicros(buyer_.key), 1000);
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

TEST_F(ServerE2E, ListingManifestHealthAndMetrics) {
  json pub = Publish({{"text", "A short document."}, {"title", "short"}});
  const std::string id = pub["artifact_id"];
  // Same content again: content-addressed, not prefilled twice.
  Reply again = srv_->Post("/v1/artifacts", {{"text", "A short document."}}, pub_.key);
  EXPECT_EQ(again.status, 200) << again.text;
  EXPECT_EQ(again.body["prefilled"], false);
  Reply list = srv_->Get("/v1/artifacts", buyer_.key);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["data"].size(), 1u);
  EXPECT_EQ(list.body["data"][0]["artifact_id"], id);
  EXPECT_EQ(list.body["data"][0]["tokens"], pub["tokens"]);
  Reply m = srv_->Get("/v1/artifacts/" + id, buyer_.key);
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.body["artifact_id"], id);
  EXPECT_FALSE(m.body.contains("token_ids"));  // not bought yet
  EXPECT_EQ(srv_->Get("/v1/models").status, 200);
  EXPECT_EQ(srv_->Get("/readyz").status, 200);
  Reply metrics = srv_->Get("/metrics");
  EXPECT_NE(metrics.text.find("kvmart_http_requests_total{route=\"/v1/artifacts\",code=\"201\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.text.find("kvmart_queue_depth 0"), std::string::npos);
  EXPECT_EQ(srv_->Get("/v1/artifacts/" + id + "/export", buyer_.key).status, 403);  // off by default
}

// The last token of an answer is sampled but never run through the model (its
// logits would go unused): an answer of n tokens that ran to max_tokens costs
// its prompt plus n − 1 token passes, one that ended on an end token (sampled
// after the n-th) its prompt plus n.
TEST_F(ServerE2E, AnAnswerNeverRunsItsLastToken) {
  auto tokens_run = [&] {
    const std::string text = srv_->Get("/metrics").text;
    const std::string name = "\nkvmart_engine_pass_tokens_total ";
    const size_t at = text.find(name);
    EXPECT_NE(at, std::string::npos);
    return at == std::string::npos ? 0ull : std::stoull(text.substr(at + name.size()));
  };
  const std::vector<int32_t> prompt = {785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13};
  for (int max_tokens : {1, 2, 7}) {
    const uint64_t before = tokens_run();
    Reply r = srv_->Post("/v1/completions", {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}},
                         buyer_.key);
    ASSERT_EQ(r.status, 200) << r.text;
    const uint64_t n = r.body["usage"]["completion_tokens"];
    const bool length = r.body["choices"][0]["finish_reason"] == "length";
    EXPECT_EQ(tokens_run() - before, prompt.size() + n - (length ? 1 : 0)) << "max_tokens " << max_tokens;
    if (length) {
      EXPECT_EQ(n, static_cast<uint64_t>(max_tokens));
    }
  }
}

// Export with an egress tariff: one load of the entitlement plus the egress,
// billed before a byte leaves; a buyer who cannot pay the egress gets 402, the
// load is voided (never charged) and nothing is sent.
TEST(ServerExport, BillsEgressBeforeSendingAndRefundsTheLoadWhenUnpaid) {
  server::ServerOptions o;
  o.export_enabled = true;
  o.export_micros_per_gb = 1'000'000'000;  // $1000/GB: one micro-dollar per byte
  TestServer srv(Models(), o);
  TestServer::Account pub = srv.NewAccount("publisher", "publish");
  TestServer::Account rich = srv.NewAccount("rich", "buy", "5");
  TestServer::Account poor = srv.NewAccount("poor", "buy", "0.003");
  Reply published = srv.Post("/v1/artifacts", {{"messages", kPrefix}, {"price", {{"per_load", "0.002"}}}}, pub.key);
  ASSERT_EQ(published.status, 201) << published.text;
  const std::string id = published.body["artifact_id"];
  for (const auto* a : {&rich, &poor}) {
    Reply b = srv.Post("/v1/artifacts/" + id + "/purchase", {{"kind", "metered"}, {"quantity", 1}}, a->key);
    ASSERT_EQ(b.status, 201) << b.text;
  }

  const int64_t rich0 = srv.BalanceMicros(rich.key);
  Reply ex = srv.Get("/v1/artifacts/" + id + "/export", rich.key);
  ASSERT_EQ(ex.status, 200) << ex.text;
  const int64_t bytes = static_cast<int64_t>(ex.text.size());
  ASSERT_GT(bytes, 1000);
  EXPECT_EQ(ex.headers.find("X-Kvmart-Egress-Bytes")->second, std::to_string(bytes));
  // ceil(bytes × 10^9 / 10^9) = bytes micros, on top of the 2000-micro load.
  EXPECT_EQ(rich0 - srv.BalanceMicros(rich.key), 2000 + bytes);
  auto it = ex.headers.find("X-Kvmart-Egress-Receipt");
  ASSERT_NE(it, ex.headers.end());
  auto receipt = market::VerifyReceipt(it->second, srv.Get("/v1/provider/key").body["receipt_public_key"].get<std::string>());
  ASSERT_TRUE(receipt.ok()) << receipt.status().ToString();
  EXPECT_EQ(receipt->kind, "egress");
  EXPECT_EQ(receipt->price_micros, bytes);
  EXPECT_EQ(receipt->artifact_id, id);

  // $0.003 less the $0.002 load leaves 1000 micros, short of the egress: 402,
  // the load is voided (never charged) and no bytes are sent.
  const int64_t poor0 = srv.BalanceMicros(poor.key);
  Reply refused = srv.Get("/v1/artifacts/" + id + "/export", poor.key);
  EXPECT_EQ(refused.status, 402) << refused.text;
  EXPECT_EQ(refused.body["error"]["type"], "insufficient_funds");
  EXPECT_EQ(srv.BalanceMicros(poor.key), poor0);
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

// httplib sends a response's headers and body with separate send()s; with
// Nagle's algorithm on, the body waited for the client's delayed ACK and every
// answer on a kept-alive connection took 40 ms more. The server's end of an
// accepted connection must have TCP_NODELAY (found through /proc/self/fd: the
// server runs in this process).
TEST(ServerConnections, AcceptedSocketsSendWithoutNagleDelay) {
  TestServer srv(Models());
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(srv.port()));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(client, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  // One exchange, so the server has accepted the connection and holds it open (keep-alive).
  const std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(::send(client, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  char buf[512];
  ASSERT_GT(::recv(client, buf, sizeof buf, 0), 0);
  sockaddr_in mine{};
  socklen_t len = sizeof mine;
  ASSERT_EQ(::getsockname(client, reinterpret_cast<sockaddr*>(&mine), &len), 0);

  int found = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::atoi(e.path().filename().c_str());
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_in local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 || local.sin_family != AF_INET ||
        ntohs(local.sin_port) != srv.port()) {
      continue;
    }
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0 || peer.sin_port != mine.sin_port) continue;
    int nodelay = 0;
    socklen_t nl = sizeof nodelay;
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &nl), 0);
    EXPECT_NE(nodelay, 0) << "the server's end of the connection has Nagle's algorithm on";
    ++found;
  }
  ::close(client);
  EXPECT_EQ(found, 1) << "the server's end of the connection was not found";
}

// The backlog of the listening TCP socket on 127.0.0.1:`port`, as the kernel
// reports it through sock_diag (what `ss -ltn` prints as Send-Q), or -1.
int ListenBacklog(int port) {
  const int nl = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return -1;
  struct {
    nlmsghdr h;
    inet_diag_req_v2 r;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.r.sdiag_family = AF_INET;
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = 1u << 10;  // TCP_LISTEN
  req.r.id.idiag_sport = htons(static_cast<uint16_t>(port));
  int backlog = -1;
  if (::send(nl, &req, sizeof req, 0) == static_cast<ssize_t>(sizeof req)) {
    alignas(nlmsghdr) char buf[16384];
    for (bool done = false; !done;) {
      const ssize_t n = ::recv(nl, buf, sizeof buf, 0);
      if (n <= 0) break;
      int left = static_cast<int>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
        if (ntohs(m->id.idiag_sport) == port) backlog = static_cast<int>(m->idiag_wqueue);
      }
    }
  }
  ::close(nl);
  return backlog;
}

// Debian's cpp-httplib listens with a compiled-in backlog of 5: 16 clients
// connecting at once overflowed it, and now and then one's connection died
// unanswered. The server widens it after bind.
TEST(ServerConnections, ListeningSocketHoldsABurstOfClients) {
  TestServer srv(Models());
  int somaxconn = 0;  // the kernel's cap on any backlog
  std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
  ASSERT_GT(somaxconn, 5);
  EXPECT_EQ(ListenBacklog(srv.port()), std::min(server::kListenBacklog, somaxconn));
}

}  // namespace
}  // namespace kvmart::testing
