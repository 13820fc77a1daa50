// libFuzzer target for kvmart's HTTP server: the input is the byte stream of
// one client connection (one or more pipelined HTTP/1.1 requests), served by
// a real kvmart server (routes, authentication, JSON bodies, idempotency,
// body limits, the market on SQLite, the disk store, the engine on a tiny
// synthetic model) through Server::ServeStream, with no socket.
//
// The server and its state are made once, at the first input, in a fresh
// temporary directory (removed at exit): an admin key, a publisher key, a
// funded buyer key and one published artifact. Inputs name them with
// placeholders, replaced before the bytes reach the server:
//   @ADMIN@  @PUB@  @BUY@   the three API keys (headers; any length)
//   kv1-XXXX...X (64 X)     the published artifact's id (same length, so a
//                           body's Content-Length stays right)
// The state carries over from input to input (purchases, deposits,
// publishes), as on a live server.
//
// Findings, beyond the sanitizers: an answer that is not an HTTP/1.1 status
// line, a 500 (a handler threw or broke an invariant of its own), and a
// ledger that fails the market's invariant check (every 64 inputs).
// KVMART_FUZZ_HTTP_PRINT=1 prints each input's answers on stderr.
#include <httplib.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "artifact/signing.h"
#include "engine/engine.h"
#include "market/sql_market.h"
#include "model/model.h"
#include "model/synth.h"
#include "server/server.h"
#include "server/server_db.h"
#include "store/store.h"
#include "tokenizer/tokenizer.h"

namespace {

using nlohmann::json;

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "fatal: %s\n", what.c_str());
  std::abort();
}

template <typename T>
T Must(kvmart::StatusOr<T> v, const char* what) {
  if (!v.ok()) Fatal(std::string(what) + ": " + v.status().ToString());
  return std::move(v).value();
}

// One connection's bytes: reads come from the input, writes are kept (up to a
// cap) so that the answers can be checked.
class BytesStream : public httplib::Stream {
 public:
  explicit BytesStream(std::string_view input) : input_(input) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, input_.size() - read_);
    std::memcpy(ptr, input_.data() + read_, n);
    read_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (output_.size() < kMaxKept) output_.append(ptr, std::min(size, kMaxKept - output_.size()));
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 0;  // no socket has this port, so no connection watch matches one
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 0;
  }
  socket_t socket() const override { return INVALID_SOCKET; }
  const std::string& output() const { return output_; }

 private:
  static constexpr size_t kMaxKept = 4u << 20;
  std::string_view input_;
  size_t read_ = 0;
  std::string output_;
};

const std::string kArtifactPlaceholder = "kv1-" + std::string(64, 'X');

class Fixture {
 public:
  Fixture() {
    const char* tokenizer = std::getenv("KVMART_FUZZ_TOKENIZER");
    if (tokenizer == nullptr) Fatal("set KVMART_FUZZ_TOKENIZER to the Qwen3 tokenizer.json (make fuzz does)");
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvmart-fuzz-http-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) Fatal("mkdtemp");
    dir_ = tmpl;

    kvmart::SynthOptions so;
    so.shape = "tiny";
    so.out_dir = dir_ + "/model";
    so.tokenizer_dir = std::filesystem::path(tokenizer).parent_path().string();
    so.threads = 1;
    if (auto st = kvmart::WriteSyntheticCheckpoint(so); !st.ok()) Fatal("synthetic model: " + st.ToString());

    kvmart::server::ServerParts parts;
    kvmart::EngineOptions eo;
    eo.threads = 1;
    eo.kernels = Must(kvmart::ParseKernelPath("auto"), "kernels");
    eo.max_context = 512;  // long prompts are refused: each input stays quick
    std::shared_ptr<const kvmart::Model> model = Must(kvmart::Model::Load(so.out_dir), "model");
    parts.engine = Must(kvmart::Engine::Create(model, eo), "engine");
    parts.tokenizer = Must(kvmart::tokenizer::Tokenizer::Load(so.out_dir + "/tokenizer.json"), "tokenizer");
    auto market = Must(kvmart::market::SqlMarket::Open(dir_ + "/market.db", {}), "market");
    admin_ = Must(market->Initialize(kvmart::market::Currency()), "market init").admin_key;
    parts.market = std::move(market);
    kvmart::store::StoreOptions sto;
    sto.data_dir = dir_ + "/store";
    sto.durable = false;
    sto.memory_budget_bytes = 64u << 20;
    sto.decode_threads = 1;
    sto.read_buffer_pool_bytes = 8u << 20;
    parts.store = Must(kvmart::store::Store::Open(sto), "store");
    parts.db = Must(kvmart::server::ServerDb::Open(dir_ + "/server.db"), "server db");
    parts.signing_key =
        std::make_unique<kvmart::artifact::SigningKey>(Must(kvmart::artifact::SigningKey::Generate(), "signing key"));

    kvmart::server::ServerOptions o;
    o.log_requests = false;
    o.max_sessions = 2;
    o.max_queue = 2;
    o.max_body_bytes = 64u << 10;
    o.default_max_tokens = 2;
    o.max_tokens_limit = 4;
    o.prefill_chunk = 64;
    o.resident_kv_bytes = 16u << 20;
    o.market_maintenance_interval_s = 0;
    o.export_enabled = true;
    o.export_micros_per_gb = 1000;
    o.accept_uploads = true;
    o.upload_spot_check_blocks = 2;
    server_ = Must(kvmart::server::Server::Create(o, std::move(parts)), "server");

    publisher_ = NewKey("publisher", "publish", "");
    buyer_ = NewKey("buyer", "buy", "1000");
    const json art = Call("POST", "/v1/artifacts", publisher_,
                          {{"text", "A shared document for the fuzz target's buyers to load."},
                           {"price", {{"per_load", "0.001"}}}},
                          201);
    artifact_ = art.at("artifact_id").get<std::string>();
    if (artifact_.size() != kArtifactPlaceholder.size()) Fatal("artifact id " + artifact_);
  }
  ~Fixture() {
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  // The input with its placeholders replaced.
  std::string Substitute(std::string_view input) const {
    std::string s(input);
    const std::pair<std::string_view, const std::string*> placeholders[] = {
        {"@ADMIN@", &admin_}, {"@PUB@", &publisher_}, {"@BUY@", &buyer_}, {kArtifactPlaceholder, &artifact_}};
    for (const auto& [from, to] : placeholders) {
      for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to->size())) {
        s.replace(at, from.size(), *to);
      }
    }
    return s;
  }

  std::string Serve(std::string_view bytes) {
    BytesStream stream(bytes);
    if (auto st = server_->ServeStream(stream, 4); !st.ok()) Fatal("ServeStream: " + st.ToString());
    return stream.output();
  }

  kvmart::server::Server& server() { return *server_; }

 private:
  json Call(const std::string& method, const std::string& path, const std::string& key, const json& body,
            int want) {
    const std::string b = body.dump();
    const std::string req = method + " " + path + " HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer " + key +
                            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(b.size()) +
                            "\r\nConnection: close\r\n\r\n" + b;
    const std::string out = Serve(req);
    const std::string status = "HTTP/1.1 " + std::to_string(want) + " ";
    const size_t head = out.find("\r\n\r\n");
    if (out.rfind(status, 0) != 0 || head == std::string::npos) Fatal(method + " " + path + ": " + out);
    return json::parse(out.substr(head + 4));
  }
  std::string NewKey(const std::string& name, const std::string& scopes, const std::string& deposit) {
    const json a = Call("POST", "/v1/accounts", admin_, {{"name", name}, {"scopes", scopes}}, 201);
    if (!deposit.empty()) {
      Call("POST", "/v1/accounts/" + std::to_string(a.at("account_id").get<int64_t>()) + "/deposits", admin_,
           {{"amount", deposit}}, 201);
    }
    return a.at("api_key").get<std::string>();
  }

  std::string dir_, admin_, publisher_, buyer_, artifact_;
  std::unique_ptr<kvmart::server::Server> server_;
};

Fixture& TheFixture() {
  static Fixture fixture;
  return fixture;
}

// Every answer on the connection: a status line, never a 500. Answers follow
// each other with no separator, and a body may echo input; a status line of
// its own (raw CRLF, which a JSON body escapes) is what is looked for.
void CheckAnswers(const std::string& out, const std::string& input) {
  static constexpr std::string_view k500 = "HTTP/1.1 500 Internal Server Error\r\n";
  if (const size_t at = out.find(k500); at != std::string::npos) {
    Fatal("500 for the input\n" + input + "\n--- answer ---\n" + out.substr(at, 2000));
  }
  if (!out.empty() && out.rfind("HTTP/1.1 ", 0) != 0) Fatal("not an HTTP answer: " + out.substr(0, 200));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = TheFixture();
  const std::string input = f.Substitute(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::string answers = f.Serve(input);
  // KVMART_FUZZ_HTTP_PRINT=1: each input's answers on stderr (to check what seeds reach).
  static const bool print = std::getenv("KVMART_FUZZ_HTTP_PRINT") != nullptr;
  if (print) std::fprintf(stderr, "--- answers ---\n%s\n", answers.c_str());
  CheckAnswers(answers, input);
  static uint64_t inputs = 0;  // the fuzzer's own counter: when to check the ledger
  if (++inputs % 64 == 0) {
    if (auto st = f.server().market().CheckInvariants(); !st.ok()) Fatal("ledger: " + st.ToString());
  }
  return 0;
}
