// POST /v1/artifacts/upload (docs/SECURITY.md, "Uploads"): an artifact a
// publisher computed elsewhere is listed only after a spot check on the
// provider's engine; every forgery here is validly signed and passes every
// checksum, and each is refused with 422 naming the check, storing nothing and
// charging nothing.
#include <gtest/gtest.h>

#include "artifact/container.h"
#include "engine/artifact_io.h"
#include "engine/random_tokens.h"
#include "test_server.h"

namespace kvmart {
namespace {

using kvmart::testing::Models;
using kvmart::testing::Reply;
using kvmart::testing::TestServer;

class UploadTest : public ::testing::Test {
 protected:
  static server::ServerOptions Options() {
    server::ServerOptions o;
    o.accept_uploads = true;
    o.upload_spot_check_blocks = 2;
    return o;
  }
  void SetUp() override {
    EngineOptions eo;
    eo.threads = 1;
    engine_ = Engine::Create(Models().Load("tiny"), eo).value();
    pub_ = srv_.NewAccount("publisher", "publish");
    doc_ = RandomTextTokens(600, 3, 151936);  // 3 blocks of 256: two full, one of 88
    honest_ = Build(doc_);
  }
  // An honest artifact of `tokens`, signed by the uploader's own key.
  artifact::Artifact Build(const std::vector<int32_t>& tokens) {
    auto s = engine_->NewSession();
    auto a = BuildArtifact(*s, tokens, {}, key_);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return std::move(a).value();
  }
  // A validly signed artifact claiming `tokens` with these payloads and probe.
  artifact::Artifact Forge(const artifact::Profile& profile, const std::vector<int32_t>& tokens,
                           const std::vector<std::vector<uint8_t>>& payloads, const Digest256& probe) {
    auto w = artifact::ArtifactWriter::Create(profile, std::vector<uint32_t>(tokens.begin(), tokens.end()),
                                              artifact::Codec::kRaw);
    EXPECT_TRUE(w.ok());
    for (const auto& p : payloads) EXPECT_TRUE(w->AddBlock(p).ok());
    auto a = std::move(*w).Finish(probe, {}, key_);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return std::move(a).value();
  }
  static std::string Bytes(const artifact::Artifact& a) {
    auto b = artifact::SerializeContainer(a);
    EXPECT_TRUE(b.ok());
    return std::string(b->begin(), b->end());
  }
  Reply Upload(const std::string& body, const std::string& idem, const std::string& key = "") {
    return srv_.Call("POST", "/v1/artifacts/upload?per_load=0.002", body, key.empty() ? pub_.key : key,
                     {{"Idempotency-Key", idem}}, "application/octet-stream");
  }
  void ExpectRejected(const std::string& body, const std::string& check) {
    const int64_t before = srv_.BalanceMicros(pub_.key);
    const size_t stored = srv_.server().store().List().size();
    Reply r = Upload(body, "up-" + check + std::to_string(++n_));
    EXPECT_EQ(r.status, 422) << r.text;
    EXPECT_EQ(r.body["error"]["type"], "artifact_rejected") << r.text;
    EXPECT_EQ(r.body["error"]["check"], check) << r.text;
    EXPECT_EQ(srv_.server().store().List().size(), stored) << "a rejected upload was stored";
    EXPECT_EQ(srv_.BalanceMicros(pub_.key), before) << "a rejected upload moved money";
    EXPECT_TRUE(srv_.server().market().CheckInvariants().ok());
  }

  TestServer srv_{Models(), Options()};
  std::unique_ptr<Engine> engine_;
  artifact::SigningKey key_ = artifact::SigningKey::Generate().value();
  TestServer::Account pub_;
  std::vector<int32_t> doc_;
  artifact::Artifact honest_;
  int n_ = 0;
};

TEST_F(UploadTest, AnHonestArtifactIsCheckedListedAndLoadable) {
  Reply r = Upload(Bytes(honest_), "up-1");
  ASSERT_EQ(r.status, 201) << r.text;
  EXPECT_EQ(r.body["artifact_id"], honest_.manifest.artifact_id);
  EXPECT_EQ(r.body["blocks"], 3);
  EXPECT_EQ(r.body["listing"]["per_load"]["micros"], 2000);
  EXPECT_TRUE(srv_.server().store().Stat(honest_.manifest.artifact_id).ok());
  // A buyer loads it; the answer continues from the uploaded KV bit-exactly.
  auto buyer = srv_.NewAccount("buyer", "buy", "1");
  ASSERT_EQ(srv_.Post("/v1/artifacts/" + honest_.manifest.artifact_id + "/purchase", {{"quantity", 1}}, buyer.key).status,
            201);
  std::vector<int32_t> ask = doc_;
  for (int t : {11, 12, 13}) ask.push_back(t);
  Reply hit = srv_.Post("/v1/completions",
                        {{"prompt", ask}, {"max_tokens", 3}, {"temperature", 0}, {"kvmart_debug", true},
                         {"kv", {{"artifact", honest_.manifest.artifact_id}}}},
                        buyer.key);
  ASSERT_EQ(hit.status, 200) << hit.text;
  EXPECT_EQ(hit.body["kvmart_debug"]["tokens_reused"], 600);
  Reply cold = srv_.Post("/v1/completions", {{"prompt", ask}, {"max_tokens", 3}, {"temperature", 0}, {"kvmart_debug", true}},
                         buyer.key);
  ASSERT_EQ(cold.status, 200) << cold.text;
  EXPECT_EQ(hit.body["kvmart_debug"]["logits_sha256"], cold.body["kvmart_debug"]["logits_sha256"]);
  // The same upload again replays.
  EXPECT_EQ(Upload(Bytes(honest_), "up-1").status, 201);
}

TEST_F(UploadTest, KvOfAnotherTextUnderTheClaimedTokensIsRejected) {
  const auto other = Build(RandomTextTokens(600, 4, 151936));
  ExpectRejected(Bytes(Forge(honest_.manifest.profile, doc_, other.stored_blocks, honest_.manifest.probe_logits_sha256)),
                 "spot_check");
}

TEST_F(UploadTest, OneAlteredBitIsRejected) {
  auto payloads = honest_.stored_blocks;
  payloads[2][77] ^= 0x01;  // the last block: always recomputed
  ExpectRejected(Bytes(Forge(honest_.manifest.profile, doc_, payloads, honest_.manifest.probe_logits_sha256)),
                 "spot_check");
}

TEST_F(UploadTest, ReorderedBlocksAreRejected) {
  auto payloads = honest_.stored_blocks;
  std::swap(payloads[0], payloads[1]);  // both full: same sizes, valid checksums after re-signing
  // With 2 of the 2 other blocks checked, both are recomputed.
  ExpectRejected(Bytes(Forge(honest_.manifest.profile, doc_, payloads, honest_.manifest.probe_logits_sha256)),
                 "spot_check");
}

TEST_F(UploadTest, AWrongProbeIsRejected) {
  Digest256 probe = honest_.manifest.probe_logits_sha256;
  probe[0] ^= 1;
  ExpectRejected(Bytes(Forge(honest_.manifest.profile, doc_, honest_.stored_blocks, probe)), "probe");
}

TEST_F(UploadTest, AnArtifactForAnotherModelIsRejected) {
  artifact::Profile p = honest_.manifest.profile;
  p.weights_digest = std::string(64, 'e');  // signed for other weights
  ExpectRejected(Bytes(Forge(p, doc_, honest_.stored_blocks, honest_.manifest.probe_logits_sha256)), "profile");
}

TEST_F(UploadTest, AForeignSignatureAndATruncatedFileAreRejected) {
  // The honest manifest with the signature of another artifact (a replay), in
  // a well-formed container (its checksums made for these bytes).
  const auto other = Build(RandomTextTokens(300, 5, 151936));
  artifact::Artifact replay = honest_;
  replay.manifest.signature = other.manifest.signature;
  ExpectRejected(Bytes(replay), "signature");
  const std::string whole = Bytes(honest_);
  ExpectRejected(whole.substr(0, whole.size() / 2), "container");
  ExpectRejected("", "container");
}

TEST_F(UploadTest, WrongCallersAndDeploymentsAreRefusedBeforeAnyCheck) {
  auto buyer = srv_.NewAccount("buyer", "buy", "1");
  EXPECT_EQ(Upload(Bytes(honest_), "up-b", buyer.key).status, 403);
  Reply json_body = srv_.Call("POST", "/v1/artifacts/upload", Bytes(honest_), pub_.key, {{"Idempotency-Key", "j"}});
  EXPECT_EQ(json_body.status, 415) << json_body.text;
  TestServer closed(Models());  // --accept-uploads not given
  auto p = closed.NewAccount("publisher", "publish");
  Reply r = closed.Call("POST", "/v1/artifacts/upload", Bytes(honest_), p.key, {{"Idempotency-Key", "c"}},
                        "application/octet-stream");
  EXPECT_EQ(r.status, 403) << r.text;
  EXPECT_NE(r.text.find("--accept-uploads"), std::string::npos) << r.text;
  EXPECT_TRUE(closed.server().store().List().empty());
}

}  // namespace
}  // namespace kvmart
