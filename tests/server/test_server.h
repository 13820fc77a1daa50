// An in-process kvmart server on an ephemeral loopback port, over the tiny
// synthetic model, with a fresh market and store in a temporary directory, plus
// a small JSON client for the tests.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/time.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "engine/engine.h"
#include "market/sql_market.h"
#include "store/store.h"
#include "server/server.h"
#include "testing/synthetic_model.h"
#include "testing/temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::testing {

using nlohmann::json;

struct Reply {
  int status = 0;
  json body;
  std::string text;
  httplib::Headers headers;
};

// One checkpoint per test process, removed at exit.
inline SyntheticModels& Models() {
  static SyntheticModels models;
  return models;
}

class TestServer {
 public:
  using StoreWrapper = std::function<std::unique_ptr<store::Store>(std::unique_ptr<store::Store>)>;
  // tokenizer_json: another tokenizer.json for the server than the model's;
  // kv_limit_bytes: the engine's KV page limit (0: none).
  using MarketOptionsHook = std::function<void(market::MarketOptions&)>;
  explicit TestServer(SyntheticModels& models, server::ServerOptions options = {}, StoreWrapper wrap = nullptr,
                      const std::string& tokenizer_json = "", MarketOptionsHook market_options = nullptr,
                      size_t kv_limit_bytes = 0) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.log_requests = std::getenv("KVMART_TEST_LOG") != nullptr;
    server::ServerParts parts;
    model_dir_ = models.Dir("tiny");
    EngineOptions eo;
    eo.threads = 1;
    eo.kernels = ParseKernelPath("auto").value();
    eo.kv_limit_bytes = kv_limit_bytes;
    parts.engine = Engine::Create(models.Load("tiny"), eo).value();
    parts.tokenizer =
        tokenizer::Tokenizer::Load(tokenizer_json.empty() ? model_dir_ + "/tokenizer.json" : tokenizer_json).value();
    market::MarketOptions mo;
    if (market_options) market_options(mo);
    auto market = market::SqlMarket::Open(tmp_.Sub("market.db"), mo).value();
    auto boot = market->Initialize(market::Currency()).value();
    admin_key_ = boot.admin_key;
    provider_key_ = boot.provider_public_key;
    parts.market = std::move(market);
    store::StoreOptions so;
    so.data_dir = tmp_.Sub("store");
    so.durable = false;
    parts.store = store::Store::Open(so).value();
    if (wrap) parts.store = wrap(std::move(parts.store));
    parts.db = server::ServerDb::Open(tmp_.Sub("server.db")).value();
    parts.signing_key = std::make_unique<artifact::SigningKey>(artifact::SigningKey::Generate().value());
    server_ = server::Server::Create(options, std::move(parts)).value();
    EXPECT_TRUE(server_->Bind().ok());
    thread_ = std::thread([this] { (void)server_->Run(); });
    // Wait until the listener accepts.
    for (int i = 0; i < 200; ++i) {
      if (Get("/healthz").status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~TestServer() {
    server_->Stop();
    thread_.join();
  }

  int port() const { return server_->port(); }
  server::Server& server() { return *server_; }
  const std::string& admin_key() const { return admin_key_; }
  const std::string& provider_key() const { return provider_key_; }
  const std::string& dir() const { return tmp_.path(); }

  Reply Call(const std::string& method, const std::string& path, const std::string& body, const std::string& key,
             httplib::Headers headers = {}, const std::string& content_type = "application/json") {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(120);
    if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
    httplib::Result r = method == "GET"      ? c.Get(path.c_str(), headers)
                        : method == "DELETE" ? c.Delete(path.c_str(), headers)
                        : method == "PUT"    ? c.Put(path.c_str(), headers, body, content_type.c_str())
                                             : c.Post(path.c_str(), headers, body, content_type.c_str());
    Reply out;
    if (!r) {
      out.text = "transport error: " + httplib::to_string(r.error());  // status stays 0
      return out;
    }
    out.status = r->status;
    out.text = r->body;
    out.headers = r->headers;
    out.body = json::parse(r->body, nullptr, false);
    return out;
  }
  Reply Get(const std::string& path, const std::string& key = "") { return Call("GET", path, "", key); }
  Reply Post(const std::string& path, const json& body, const std::string& key, httplib::Headers h = {}) {
    return Call("POST", path, body.dump(), key, std::move(h));
  }

  struct Account {
    int64_t id = 0;
    int64_t key_id = 0;
    std::string key;
  };
  // A new account with a key of `scopes`, funded with `deposit` (units).
  Account NewAccount(const std::string& name, const std::string& scopes, const std::string& deposit = "") {
    Reply r = Post("/v1/accounts", {{"name", name}, {"scopes", scopes}}, admin_key_);
    EXPECT_EQ(r.status, 201) << r.text;
    Account a{r.body.value("account_id", int64_t{0}), r.body.value("key_id", int64_t{0}),
              r.body.value("api_key", std::string())};
    if (!deposit.empty()) {
      Reply d = Post("/v1/accounts/" + std::to_string(a.id) + "/deposits", {{"amount", deposit}}, admin_key_);
      EXPECT_EQ(d.status, 201) << d.text;
    }
    return a;
  }
  int64_t BalanceMicros(const std::string& key) {
    return Get("/v1/accounts/me", key).body["balance"]["micros"].get<int64_t>();
  }

 private:
  TempDir tmp_;
  std::string model_dir_, admin_key_, provider_key_;
  std::unique_ptr<server::Server> server_;
  std::thread thread_;
};

// Sends `request` verbatim on a fresh loopback connection and returns what
// the server wrote back before closing or before `timeout` passed (a server
// that waits for more input yields "" here, which the caller's checks catch).
inline std::string RawExchange(int port, const std::string& request, std::chrono::seconds timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count());
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    // One whole response (headers and a Content-Length body) is enough.
    const size_t end = got.find("\r\n\r\n");
    const size_t cl = got.find("Content-Length: ");
    if (end != std::string::npos && cl != std::string::npos && cl < end &&
        got.size() >= end + 4 + std::stoul(got.substr(cl + 16))) {
      break;
    }
  }
  close(fd);
  return got;
}

// Sends a streamed chat completion on a raw connection and returns its socket
// once a few events have arrived (tokens are flowing); close it to vanish.
inline int OpenStreamingRequest(int port, const std::string& key, const json& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string b = body.dump();
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key +
                          "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(b.size()) +
                          "\r\n\r\n" + b;
  EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[512];
  for (size_t events = 0; events < 4;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    events = 0;
    for (size_t p = got.find("data: "); p != std::string::npos; p = got.find("data: ", p + 1)) ++events;
  }
  return fd;
}

}  // namespace kvmart::testing
