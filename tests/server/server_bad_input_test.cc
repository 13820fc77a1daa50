// Bad input over HTTP: every failure is a JSON error with the right status, and
// an unauthenticated or unentitled caller learns nothing about what is held.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "engine/artifact_io.h"
#include "model/synth.h"
#include "test_server.h"

namespace kvmart::testing {
namespace {

const std::string kUnknown = "kv1-" + std::string(64, 'a');

void ExpectError(const Reply& r, int status, const std::string& type) {
  EXPECT_EQ(r.status, status) << r.text;
  ASSERT_TRUE(r.body.is_object()) << r.text;
  EXPECT_EQ(r.body["error"]["type"], type) << r.text;
  EXPECT_TRUE(r.body["error"]["message"].is_string());
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

class ServerBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions o;
    o.max_body_bytes = 64 << 10;
    srv_ = std::make_unique<TestServer>(Models(), o);
    pub_ = srv_->NewAccount("publisher", "publish");
    buyer_ = srv_->NewAccount("buyer", "buy", "1");
    Reply r = srv_->Post("/v1/artifacts", {{"text", "Some document text for the tests."}}, pub_.key);
    EXPECT_EQ(r.status, 201) << r.text;
    id_ = r.body.value("artifact_id", std::string());
  }
  json Ask(const std::string& id) {
    return {{"messages", {{{"role", "user"}, {"content", "q"}}}}, {"max_tokens", 2}, {"temperature", 0},
            {"kv", {{"artifact", id}}}};
  }
  std::unique_ptr<TestServer> srv_;
  TestServer::Account pub_, buyer_;
  std::string id_;
};

TEST_F(ServerBadInput, MalformedAndMistypedRequests) {
  ExpectError(srv_->Call("POST", "/v1/chat/completions", "{not json", buyer_.key), 400, "invalid_request_error");
  ExpectError(srv_->Call("POST", "/v1/chat/completions", "[1,2]", buyer_.key), 400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", "hi"}}, buyer_.key), 400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", json::object(), buyer_.key), 400, "invalid_request_error");
  const json msgs = {{{"role", "user"}, {"content", "x"}}};
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", "ten"}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", -1}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"temperature", 7}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"stop", {1, 2}}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"n", 3}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}, buyer_.key),
              400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"kv", {{"artifact", "kv1-zz"}}}}, buyer_.key),
              400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"kv", 5}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Post("/v1/completions", {{"prompt", {1, -5}}}, buyer_.key), 400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/completions", {{"prompt", {999999999}}}, buyer_.key), 400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/artifacts", {{"text", 5}}, pub_.key), 400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/artifacts", {{"text", "a"}, {"tokens", {1}}}, pub_.key), 400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/artifacts", {{"text", "a"}, {"price", {{"per_load", "1.2.3"}}}}, pub_.key), 400,
              "invalid_request_error");
  // Money is a decimal string; a JSON number (already a double) is refused and
  // the message says what to send.
  for (const json& price : {json(0.0015), json(2)}) {
    Reply r = srv_->Post("/v1/artifacts", {{"text", "a"}, {"price", {{"per_load", price}}}}, pub_.key);
    ExpectError(r, 400, "invalid_request_error");
    EXPECT_NE(r.text.find("decimal string"), std::string::npos) << r.text;
  }
  ExpectError(srv_->Post("/v1/chat/completions", {{"messages", msgs}, {"kv", {{"auto", true}, {"max_price", 0.5}}}},
                         buyer_.key),
              400, "invalid_request_error");
  ExpectError(srv_->Post("/v1/artifacts/" + id_ + "/purchase", {{"kind", "forever"}}, buyer_.key), 400,
              "invalid_request_error");
  ExpectError(srv_->Get("/v1/nothing-here"), 404, "not_found_error");
  // Over the body limit: refused before the body is read.
  ExpectError(srv_->Call("POST", "/v1/chat/completions", std::string(100 << 10, ' '), buyer_.key), 413,
              "invalid_request_error");
}

// ServeStream (the HTTP fuzz target's way in): pipelined requests on one
// in-memory connection are answered in order as on a socket, a malformed one
// with a 400, and the stream is not read past the last request served.
TEST_F(ServerBadInput, ServeStreamAnswersPipelinedRequestsWithoutASocket) {
  class Bytes : public httplib::Stream {
   public:
    explicit Bytes(std::string in) : in_(std::move(in)) {}
    bool is_readable() const override { return true; }
    bool is_writable() const override { return true; }
    ssize_t read(char* p, size_t n) override {
      n = std::min(n, in_.size() - at_);
      std::memcpy(p, in_.data() + at_, n);
      at_ += n;
      return static_cast<ssize_t>(n);
    }
    ssize_t write(const char* p, size_t n) override {
      out.append(p, n);
      return static_cast<ssize_t>(n);
    }
    void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 0; }
    void get_local_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 0; }
    socket_t socket() const override { return INVALID_SOCKET; }
    std::string out;

   private:
    std::string in_;
    size_t at_ = 0;
  };
  const std::string me = "GET /v1/accounts/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + buyer_.key + "\r\n\r\n";
  Bytes two("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + me + "GET /healthz HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(srv_->server().ServeStream(two, 2).ok());
  ASSERT_EQ(two.out.rfind("HTTP/1.1 200", 0), 0u) << two.out;
  // Answers follow one another directly (each body has its Content-Length).
  const size_t second = two.out.find("HTTP/1.1 ", 1);
  ASSERT_NE(second, std::string::npos) << two.out;
  EXPECT_EQ(two.out.compare(second, 12, "HTTP/1.1 200"), 0) << two.out;
  EXPECT_NE(two.out.find("\"name\":\"buyer\"", second), std::string::npos) << two.out;
  EXPECT_EQ(two.out.find("HTTP/1.1 ", second + 1), std::string::npos) << "a third answer: " << two.out;
  EXPECT_NE(two.out.find("Connection: close"), std::string::npos) << "the last request served closes: " << two.out;

  Bytes bad("GET\r\n\r\n");
  ASSERT_TRUE(srv_->server().ServeStream(bad, 4).ok());
  EXPECT_EQ(bad.out.rfind("HTTP/1.1 400", 0), 0u) << bad.out;
  EXPECT_NE(bad.out.find("invalid_request_error"), std::string::npos) << bad.out;
}

// A POST without a body and without Content-Length is valid HTTP/1.1 (the
// body has length zero): it reaches authentication at once instead of waiting
// for a body that never comes.
TEST_F(ServerBadInput, PostWithoutBodyReachesAuthentication) {
  const std::string path = "/v1/artifacts/" + id_ + "/purchase";
  const auto t0 = std::chrono::steady_clock::now();
  std::string anon = RawExchange(srv_->port(), "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                 std::chrono::seconds(10));
  EXPECT_EQ(anon.rfind("HTTP/1.1 401", 0), 0u) << anon;
  EXPECT_NE(anon.find("authentication_error"), std::string::npos) << anon;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  // With a key, the empty body is an empty object: a purchase with defaults.
  std::string bought = RawExchange(srv_->port(),
                                   "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " +
                                       buyer_.key + "\r\n\r\n",
                                   std::chrono::seconds(10));
  EXPECT_EQ(bought.rfind("HTTP/1.1 201", 0), 0u) << bought;
}

TEST_F(ServerBadInput, UnauthenticatedAndUnentitledLearnNothing) {
  // A listed artifact the store does not hold: its answers must equal those
  // for the held one (modulo the id), so nobody learns what is cached.
  const std::string listed = "kv1-" + std::string(64, 'b');
  market::PriceSpec spec;
  spec.artifact_id = listed;
  spec.tokens = 6;
  spec.per_load_micros = 100;
  ASSERT_TRUE(srv_->server().market().SetPrice(pub_.key, "list-not-held", spec).ok());
  // A wrong key: 401, the same body whether or not the artifact exists.
  for (const std::string& key : {std::string("kvm_") + std::string(64, '0'), std::string("junk")}) {
    Reply known = srv_->Post("/v1/chat/completions", Ask(id_), key);
    Reply unknown = srv_->Post("/v1/chat/completions", Ask(kUnknown), key);
    ExpectError(known, 401, "authentication_error");
    EXPECT_EQ(known.text, unknown.text);
  }
  // No key: a listed artifact is offered for payment (402, PAYMENT-REQUIRED),
  // held or not, before any lookup; an unlisted one is the usual 401.
  Reply held = srv_->Post("/v1/chat/completions", Ask(id_), "");
  Reply not_held = srv_->Post("/v1/chat/completions", Ask(listed), "");
  ExpectError(held, 402, "payment_required");
  EXPECT_TRUE(held.headers.count("PAYMENT-REQUIRED"));
  EXPECT_EQ(Replace(held.text, id_, "ID"), Replace(not_held.text, listed, "ID"));
  ExpectError(srv_->Post("/v1/chat/completions", Ask(kUnknown), ""), 401, "authentication_error");
  // Authenticated but not entitled: the same 402 for a held and a not-held
  // listed artifact; 403 for an unknown one.
  Reply known = srv_->Post("/v1/chat/completions", Ask(id_), buyer_.key);
  Reply known2 = srv_->Post("/v1/chat/completions", Ask(listed), buyer_.key);
  Reply unknown = srv_->Post("/v1/chat/completions", Ask(kUnknown), buyer_.key);
  ExpectError(known, 402, "payment_required");
  EXPECT_EQ(Replace(known.text, id_, "ID"), Replace(known2.text, listed, "ID"));
  ExpectError(unknown, 403, "permission_error");
  // The message is the same as for an unknown artifact.
  EXPECT_EQ(known.body["error"]["message"].get<std::string>(),
            Replace(unknown.body["error"]["message"].get<std::string>(), kUnknown, id_));
  // Buying an unknown artifact is a plain 404 (the catalog is public).
  ExpectError(srv_->Post("/v1/artifacts/" + kUnknown + "/purchase", json::object(), buyer_.key), 404,
              "not_found_error");
  // Publishing needs the publish scope; admin routes need admin.
  ExpectError(srv_->Post("/v1/artifacts", {{"text", "x"}}, buyer_.key), 403, "permission_error");
  ExpectError(srv_->Post("/v1/accounts", {{"name", "x"}}, buyer_.key), 403, "permission_error");
}

TEST_F(ServerBadInput, ExhaustedEntitlementRevokedKeyAndNoFunds) {
  ASSERT_EQ(srv_->Post("/v1/artifacts/" + id_ + "/purchase", {{"quantity", 1}}, buyer_.key).status, 201);
  EXPECT_EQ(srv_->Post("/v1/chat/completions", Ask(id_), buyer_.key).status, 200);
  Reply exhausted = srv_->Post("/v1/chat/completions", Ask(id_), buyer_.key);
  Reply never = srv_->Post("/v1/chat/completions", Ask(kUnknown), buyer_.key);
  ExpectError(exhausted, 402, "payment_required");  // listed: may pay for the next load
  ExpectError(never, 403, "permission_error");
  EXPECT_EQ(exhausted.body["error"]["message"].get<std::string>(),
            Replace(never.body["error"]["message"].get<std::string>(), kUnknown, id_));

  // A buyer without money: the metered load cannot be charged → 402.
  auto poor = srv_->NewAccount("poor", "buy");
  ASSERT_EQ(srv_->Post("/v1/artifacts/" + id_ + "/purchase", {{"quantity", 1}}, poor.key).status, 201);
  ExpectError(srv_->Post("/v1/chat/completions", Ask(id_), poor.key), 402, "insufficient_funds");

  // Revocation takes effect on the next call.
  Reply rv = srv_->Call("DELETE", "/v1/keys/" + std::to_string(buyer_.key_id), "", srv_->admin_key());
  ASSERT_EQ(rv.status, 200) << rv.text;
  ExpectError(srv_->Get("/v1/accounts/me", buyer_.key), 401, "authentication_error");
  ExpectError(srv_->Post("/v1/chat/completions", Ask(id_), buyer_.key), 401, "authentication_error");
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

TEST_F(ServerBadInput, ArtifactOfAnotherModelIsRefusedAndRefunded) {
  // A checkpoint with other weights (seed 2): its artifacts have another profile.
  TempDir tmp;
  SynthOptions so;
  so.shape = "tiny";
  so.seed = 2;
  so.out_dir = tmp.Sub("other");
  so.tokenizer_dir = KVMART_DATA_DIR;
  ASSERT_TRUE(WriteSyntheticCheckpoint(so).ok());
  auto model = std::shared_ptr<const Model>(Model::Load(so.out_dir).value());
  auto engine = Engine::Create(model, {}).value();
  auto session = engine->NewSession();
  auto key = artifact::SigningKey::Generate().value();
  std::vector<int32_t> tokens = {5, 6, 7, 8, 9, 10};
  auto art = BuildArtifact(*session, tokens, {}, key).value();
  ASSERT_TRUE(srv_->server().store().Put(art).ok());
  const std::string other = art.manifest.artifact_id;
  // The publisher lists it through the market directly (the API would prefill
  // on this server's model instead).
  market::PriceSpec spec;
  spec.artifact_id = other;
  spec.tokens = 6;
  spec.per_load_micros = 100;
  ASSERT_TRUE(srv_->server().market().SetPrice(pub_.key, "list-other", spec).ok());
  ASSERT_EQ(srv_->Post("/v1/artifacts/" + other + "/purchase", {{"quantity", 1}}, buyer_.key).status, 201);
  const int64_t before = srv_->BalanceMicros(buyer_.key);
  Reply r = srv_->Post("/v1/chat/completions", Ask(other), buyer_.key);
  ExpectError(r, 400, "invalid_request_error");
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("another model"), std::string::npos);
  EXPECT_EQ(srv_->BalanceMicros(buyer_.key), before);  // voided, never charged
  Reply e = srv_->Get("/v1/entitlements", buyer_.key);
  EXPECT_EQ(e.body["data"][0]["loads_remaining"], 1);   // and the load given back
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

// A store whose block loads fail their integrity check after the first block
// while `broken` is set (as a flipped bit on disk would).
class DamagedStore final : public store::Store {
 public:
  DamagedStore(std::unique_ptr<store::Store> inner, std::atomic<bool>* broken) : in_(std::move(inner)), broken_(broken) {}
  Status Put(const artifact::Artifact& a) override { return in_->Put(a); }
  Status PutFile(const std::string& p) override { return in_->PutFile(p); }
  store::PrefixMatch Lookup(const Digest256& d, std::span<const uint32_t> t, const ArtifactFilter& f) override {
    return in_->Lookup(d, t, f);
  }
  StatusOr<artifact::Manifest> GetManifest(const std::string& id) override { return in_->GetManifest(id); }
  StatusOr<store::ArtifactInfo> Stat(const std::string& id) override { return in_->Stat(id); }
  std::vector<store::ArtifactInfo> List() override { return in_->List(); }
  Status Load(const std::string& id, const store::LoadOptions& o, const BlockConsumer& consume) override {
    return in_->Load(id, o, [&](const store::LoadedBlock& b) -> Status {
      if (*broken_ && b.index > 0) return Status::Corruption("block " + std::to_string(b.index) + ": XXH3 mismatch");
      return consume(b);
    });
  }
  Status LoadPrefix(const store::PrefixMatch& m, const BlockConsumer& c) override { return in_->LoadPrefix(m, c); }
  StatusOr<artifact::Artifact> Export(const std::string& id) override { return in_->Export(id); }
  Status Pin(const std::string& id, bool p) override { return in_->Pin(id, p); }
  Status SetTtl(const std::string& id, std::optional<std::chrono::seconds> t) override { return in_->SetTtl(id, t); }
  Status Remove(const std::string& id) override { return in_->Remove(id); }
  Status SetPublisherQuota(const std::string& p, uint64_t b) override { return in_->SetPublisherQuota(p, b); }
  StatusOr<store::GcReport> Gc() override { return in_->Gc(); }
  StatusOr<store::VerifyReport> Verify(const std::string& id) override { return in_->Verify(id); }
  store::StoreMetrics Metrics() const override { return in_->Metrics(); }
  Status CheckHealth() override { return in_->CheckHealth(); }
  std::string Backend() const override { return in_->Backend(); }
  void DropMemoryTier() override { in_->DropMemoryTier(); }

 private:
  std::unique_ptr<store::Store> in_;
  std::atomic<bool>* broken_;
};

TEST(ServerDamagedBlock, RefundsAndStillAnswersExactly) {
  std::atomic<bool> broken{false};
  server::ServerOptions o;
  o.resident_kv_bytes = 1;  // nothing stays resident: every load reads the store
  TestServer srv(Models(), o, [&](std::unique_ptr<store::Store> s) {
    return std::make_unique<DamagedStore>(std::move(s), &broken);
  });
  auto pub = srv.NewAccount("publisher", "publish");
  auto buyer = srv.NewAccount("buyer", "buy", "1");
  // Two blocks (block size 256), so the damage hits after a partial import.
  std::vector<int> doc(300);
  for (int i = 0; i < 300; ++i) doc[i] = 1000 + i;
  Reply p = srv.Post("/v1/artifacts", {{"tokens", doc}, {"price", {{"per_load", "0.01"}}}}, pub.key);
  ASSERT_EQ(p.status, 201) << p.text;
  const std::string id = p.body["artifact_id"];
  ASSERT_EQ(p.body["blocks"], 2);
  ASSERT_EQ(srv.Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 2}}, buyer.key).status, 201);
  json ask = {{"prompt", {7, 8, 9}}, {"max_tokens", 5}, {"temperature", 0}, {"kvmart_debug", true},
              {"kv", {{"artifact", id}}}};
  Reply good = srv.Post("/v1/completions", ask, buyer.key);
  ASSERT_EQ(good.status, 200) << good.text;
  const int64_t before = srv.BalanceMicros(buyer.key);
  broken = true;
  Reply bad = srv.Post("/v1/completions", ask, buyer.key);
  ASSERT_EQ(bad.status, 200) << bad.text;
  EXPECT_EQ(bad.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_TRUE(bad.body["kv_usage"]["error"].is_string());
  // Two-phase: the reserved load is voided, so there is no charge receipt.
  EXPECT_EQ(bad.body["kv_usage"]["voided"], true);
  EXPECT_FALSE(bad.body["kv_usage"].contains("receipt"));
  EXPECT_TRUE(good.body["kv_usage"]["receipt"].is_object());
  EXPECT_EQ(bad.body["kvmart_debug"]["logits_sha256"], good.body["kvmart_debug"]["logits_sha256"]);
  EXPECT_EQ(srv.BalanceMicros(buyer.key), before);  // reserved, then voided: never charged
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

// A hot artifact stays resident in the engine's pages after its first load:
// later loads attach those pages and never read the store again (so a block
// damaged in the store afterwards does not matter), are charged like any
// load, and give the same bits.
TEST(ServerResidentKv, LaterLoadsAttachTheResidentCopy) {
  std::atomic<bool> broken{false};
  TestServer srv(Models(), server::ServerOptions{}, [&](std::unique_ptr<store::Store> s) {
    return std::make_unique<DamagedStore>(std::move(s), &broken);
  });
  auto pub = srv.NewAccount("publisher", "publish");
  auto buyer = srv.NewAccount("buyer", "buy", "1");
  std::vector<int> doc(300);
  for (int i = 0; i < 300; ++i) doc[i] = 2000 + i;
  Reply p = srv.Post("/v1/artifacts", {{"tokens", doc}, {"price", {{"per_load", "0.01"}}}}, pub.key);
  ASSERT_EQ(p.status, 201) << p.text;
  const std::string id = p.body["artifact_id"];
  ASSERT_EQ(srv.Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 3}}, buyer.key).status, 201);
  json ask = {{"prompt", {7, 8, 9}}, {"max_tokens", 5}, {"temperature", 0}, {"kvmart_debug", true},
              {"kv", {{"artifact", id}}}};
  auto metric = [&](const std::string& name) {
    Reply m = srv.Get("/metrics");
    const size_t at = m.text.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.text.substr(at + name.size() + 2));
  };
  Reply first = srv.Post("/v1/completions", ask, buyer.key);
  ASSERT_EQ(first.status, 200) << first.text;
  EXPECT_EQ(metric("kvmart_kv_attaches_total"), 0);
  EXPECT_EQ(metric("kvmart_resident_artifacts"), 1);
  const int64_t before = srv.BalanceMicros(buyer.key);
  broken = true;
  Reply second = srv.Post("/v1/completions", ask, buyer.key);
  ASSERT_EQ(second.status, 200) << second.text;
  EXPECT_EQ(metric("kvmart_kv_attaches_total"), 1);
  EXPECT_EQ(second.body["usage"]["prompt_tokens_details"]["cached_tokens"], 300);
  EXPECT_FALSE(second.body["kv_usage"].contains("error"));
  EXPECT_EQ(second.body["kvmart_debug"]["logits_sha256"], first.body["kvmart_debug"]["logits_sha256"]);
  EXPECT_EQ(second.body["kvmart_debug"]["completion_token_ids"], first.body["kvmart_debug"]["completion_token_ids"]);
  EXPECT_EQ(srv.BalanceMicros(buyer.key), before - 10000);  // a load is a load
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

// KV memory full: a request that needs more pages than are free is answered
// 503 with Retry-After, its metered load is voided (nothing charged), resident
// artifacts were given back first, and the server keeps serving.
TEST(ServerKvPages, ExhaustedPoolAnswers503AndChargesNothing) {
  // The tiny model's page: 2 layers x 2 kv heads x (K + V) x 64 positions x 32 dims x 2 bytes.
  const size_t page = 2 * 2 * 2 * 64 * 32 * 2;
  TestServer srv(Models(), server::ServerOptions{}, nullptr, "", nullptr, 4 * page);
  auto pub = srv.NewAccount("publisher", "publish");
  auto buyer = srv.NewAccount("buyer", "buy", "1");
  std::vector<int> doc(300);  // 5 pages: more than the whole pool
  for (int i = 0; i < 300; ++i) doc[i] = 3000 + i;
  Reply p = srv.Post("/v1/artifacts", {{"tokens", doc}, {"price", {{"per_load", "0.01"}}}}, pub.key);
  ASSERT_EQ(p.status, 503) << p.text;  // the provider's own prefill does not fit either
  bool retry = false;
  for (const auto& [k, v] : p.headers) retry |= (k == "Retry-After" && std::stoi(v) >= 1);
  EXPECT_TRUE(retry);
  std::vector<int> small(150);  // 3 pages: fits
  for (int i = 0; i < 150; ++i) small[i] = 4000 + i;
  Reply q = srv.Post("/v1/artifacts", {{"tokens", small}, {"price", {{"per_load", "0.01"}}}}, pub.key);
  ASSERT_EQ(q.status, 201) << q.text;
  const std::string id = q.body["artifact_id"];
  ASSERT_EQ(srv.Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 3}}, buyer.key).status, 201);
  const int64_t before = srv.BalanceMicros(buyer.key);
  // 150 + 200 prompt tokens need 6 pages: refused, load voided.
  std::vector<int> question(200, 17);
  Reply r = srv.Post("/v1/completions", {{"prompt", question}, {"max_tokens", 2}, {"kv", {{"artifact", id}}}}, buyer.key);
  EXPECT_EQ(r.status, 503) << r.text;
  EXPECT_EQ(srv.BalanceMicros(buyer.key), before);
  // A load that fits still works: the refused one gave its pages back.
  Reply ok = srv.Post("/v1/completions", {{"prompt", {1, 2, 3}}, {"max_tokens", 2}, {"kv", {{"artifact", id}}}}, buyer.key);
  EXPECT_EQ(ok.status, 200) << ok.text;
  EXPECT_EQ(srv.BalanceMicros(buyer.key), before - 10000);
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

// Page pressure drops the resident artifact nobody may load any more before
// one a buyer still holds loads of, although that one is the least recently
// used: entitlement is read from the reservations the loads already make.
TEST(ServerKvPages, PressureEvictsTheUnentitledArtifactBeforeTheEntitledOne) {
  const size_t page = 2 * 2 * 2 * 64 * 32 * 2;  // the tiny model's page (see above)
  server::ServerOptions o;
  o.prefix_cache_bytes = 0;  // only resident artifacts hold pages between requests
  TestServer srv(Models(), o, nullptr, "", nullptr, 8 * page);
  auto pub = srv.NewAccount("publisher", "publish");
  auto buyer = srv.NewAccount("buyer", "buy", "1");
  auto publish = [&](int base) {
    std::vector<int> doc(128);  // two whole pages once resident
    for (int i = 0; i < 128; ++i) doc[i] = base + i;
    Reply p = srv.Post("/v1/artifacts", {{"tokens", doc}, {"price", {{"per_load", "0.01"}}}}, pub.key);
    EXPECT_EQ(p.status, 201) << p.text;
    return p.body.value("artifact_id", std::string());
  };
  const std::string kept = publish(5000), spent = publish(6000);
  ASSERT_EQ(srv.Post("/v1/artifacts/" + kept + "/purchase", {{"quantity", 3}}, buyer.key).status, 201);
  ASSERT_EQ(srv.Post("/v1/artifacts/" + spent + "/purchase", {{"quantity", 2}}, buyer.key).status, 201);
  auto metric = [&](const std::string& name) {
    Reply m = srv.Get("/metrics");
    const size_t at = m.text.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.text.substr(at + name.size() + 2));
  };
  auto load = [&](const std::string& id) {
    Reply r = srv.Post("/v1/completions", {{"prompt", {1, 2, 3}}, {"max_tokens", 2}, {"temperature", 0},
                                           {"kv", {{"artifact", id}}}}, buyer.key);
    EXPECT_EQ(r.status, 200) << r.text;
  };
  load(kept);  // resident; two loads left: entitled
  EXPECT_EQ(metric("kvmart_resident_entitled_artifacts"), 1);
  load(spent);  // resident, one load left: entitled
  EXPECT_EQ(metric("kvmart_resident_entitled_artifacts"), 2);
  load(spent);  // its last load: re-read from the market, nobody is entitled now
  EXPECT_EQ(metric("kvmart_resident_artifacts"), 2);
  EXPECT_EQ(metric("kvmart_resident_entitled_artifacts"), 1);
  const double attaches = metric("kvmart_kv_attaches_total");
  EXPECT_EQ(attaches, 1);  // the second load of `spent`
  // A plain request of 5 pages: 4 of the 8 are free, so one resident artifact
  // must give its pages back. `kept` is the least recently used, yet `spent` goes.
  std::vector<int> question(300, 17);
  Reply plain = srv.Post("/v1/completions", {{"prompt", question}, {"max_tokens", 2}}, buyer.key);
  ASSERT_EQ(plain.status, 200) << plain.text;
  EXPECT_EQ(metric("kvmart_resident_evictions_total"), 1);
  EXPECT_EQ(metric("kvmart_resident_artifacts"), 1);
  EXPECT_EQ(metric("kvmart_resident_entitled_artifacts"), 1);
  load(kept);  // attached: it stayed resident
  EXPECT_EQ(metric("kvmart_kv_attaches_total"), attaches + 1);
  // A purchase marks a resident artifact entitled at once.
  load(kept);  // kept's last load
  EXPECT_EQ(metric("kvmart_resident_entitled_artifacts"), 0);
  ASSERT_EQ(srv.Post("/v1/artifacts/" + kept + "/purchase", {{"quantity", 1}}, buyer.key).status, 201);
  EXPECT_EQ(metric("kvmart_resident_entitled_artifacts"), 1);
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

TEST_F(ServerBadInput, ClientDisconnectFreesTheSession) {
  json body = {{"messages", {{{"role", "user"}, {"content", "Tell me everything."}}}},
               {"max_tokens", 4000}, {"temperature", 0}, {"stream", true}};
  close(OpenStreamingRequest(srv_->port(), buyer_.key, body));
  bool freed = false;
  for (int i = 0; i < 300 && !freed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::string m = srv_->Get("/metrics").text;
    freed = m.find("kvmart_active_sessions 0") != std::string::npos &&
            m.find("kvmart_client_disconnects_total 1") != std::string::npos;
  }
  EXPECT_TRUE(freed) << srv_->Get("/metrics").text;
  // The generation stopped early: far fewer than 4000 tokens were produced.
  const std::string m = srv_->Get("/metrics").text;
  const size_t p = m.find("\nkvmart_tokens_generated_total ");
  ASSERT_NE(p, std::string::npos);
  EXPECT_LT(std::stoll(m.substr(p + 31)), 4000);
}

}  // namespace
}  // namespace kvmart::testing
