// kvmart-bench-probe: can a caller without an entitlement learn, from the
// answer to a `kv.artifact` request, what the provider holds? (docs/SECURITY.md,
// "No probing"; docs/API.md, "What an outsider learns".)
//
// A real server runs in this process on 127.0.0.1 with a synthetic model and
// the embedded market and disk store. Artifacts are published and put into
// six conditions, three per answer the API gives:
//   not listed (403 with a key, 401 without):
//     absent          an id that does not exist
//     unlisted-cold   held by the store, never loaded, unlisted (storage arrears)
//     unlisted-warm   held, loaded once by a buyer (resident in the engine's
//                     pages and in the store's memory tier), then unlisted
//   listed (402 with a fresh quote):
//     listed-removed  listed, but removed from the store (DELETE /v1/artifacts)
//     listed-cold     held, never loaded
//     listed-warm     held, loaded once (resident and in the memory tier)
// Probes of every (caller, condition) cell — callers: no key, and a key of a
// buyer without an entitlement — are shuffled (seeded, stratified by the place
// on the connection: Schedule) and sent one after another on keep-alive
// connections; each is timed with steady_clock from its first byte written to
// the last byte of the response read. Within each
// group, status, headers and body must be byte-identical once the artifact id
// and the per-request fields of the quote are set aside (Normalize says which
// and why), and the two-sample Kolmogorov–Smirnov statistic of every pair of
// conditions must stay below the α = 0.01 critical value.
//
// Positive control: the same harness and request with an entitled key must
// tell listed-warm from listed-cold (KS above the critical value), or the
// timing test would prove nothing. Every cold probe of the control loads an
// artifact that was never loaded before, whose block files were flushed and
// advised out of the page cache (posix_fadvise DONTNEED, checked with
// mincore), so it is read from the device; the store's counters and the
// server's attach counter confirm afterwards that every cold probe read the
// disk tier and every warm probe attached resident pages.
//
// Exit 0 when every unentitled comparison is below its critical value, the
// answers are byte-identical and the control detects; 1 otherwise.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "common/usage.h"
#include "engine/engine.h"
#include "engine/random_tokens.h"
#include "market/sql_market.h"
#include "model/synth.h"
#include "server/server.h"
#include "server/x402.h"
#include "store/store.h"
#include "tokenizer/tokenizer.h"

using namespace kvmart;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

// c(α) of the two-sample KS test, α = 0.01: sqrt(-ln(α/2) / 2).
constexpr double kKsC = 1.628;

struct Args {
  std::string shape = "tiny", model_dir, kernels = "auto";
  size_t probes = 2000, pool = 32, doc_tokens = 512, threads = 2;
  uint64_t seed = 1;
  bool json = false;
};

enum Condition { kAbsent, kUnlistedCold, kUnlistedWarm, kListedRemoved, kListedCold, kListedWarm, kConditions };
constexpr std::array<const char*, kConditions> kConditionName = {"absent",         "unlisted-cold", "unlisted-warm",
                                                                 "listed-removed", "listed-cold",   "listed-warm"};
// The conditions whose answers must be indistinguishable, per group.
constexpr std::array<std::array<Condition, 3>, 2> kGroups = {{{kAbsent, kUnlistedCold, kUnlistedWarm},
                                                              {kListedRemoved, kListedCold, kListedWarm}}};
enum Caller { kKeyless, kStranger, kBuyer, kCallers };
constexpr std::array<const char*, kCallers> kCallerName = {"no key", "unentitled key", "entitled key"};

void Say(const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); }

// A setup step that failed: the run stops (exit 1) after unwinding, so the
// server stops and the temporary directory goes.
struct Fatal : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void Die(const std::string& what, const Status& st) { throw Fatal(what + ": " + st.ToString()); }
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t p = s->find(from); p != std::string::npos; p = s->find(from, p + to.size())) s->replace(p, from.size(), to);
}

// --- One HTTP/1.1 connection, byte for byte --------------------------------
// httplib's client parses and reorders what it reads; the comparison needs the
// response as sent, and the timing only the request itself (no reconnect).

struct Reply {
  std::string status_line;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // in the order sent
  std::string body;
  bool closes = false;  // the server sent Connection: close
};

// Keep-alive connections of `length` requests each: httplib's server closes a
// connection after 5, and a request's place on its connection costs more than
// any leak this benchmark looks for (the first ~60 µs more than the fifth on the
// development machine), so the probes are laid out to give every condition each
// place equally often (Schedule below) and the client keeps to that length.
class Connection {
 public:
  Connection(int port, int length) : port_(port), length_(length) {}

  // Sends `request` and reads the whole response into *reply; *seconds runs
  // from the first byte written to the last byte read. A new connection is
  // opened, outside the timed span, after `length` requests or when the server
  // closed the last one. *place: 1-based place of this request on its connection.
  Status RoundTrip(const std::string& request, Reply* reply, double* seconds, int* place) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!fd_) KVMART_RETURN_IF_ERROR(Open());
      const auto t0 = Clock::now();
      Status st = Send(request);
      bool got_bytes = false;
      if (st.ok()) st = Receive(reply, &got_bytes);
      *seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      if (st.ok()) {
        *place = ++served_;
        if (reply->closes || served_ >= length_) fd_.reset();
        return st;
      }
      fd_.reset();
      // A keep-alive connection the server closed while idle: retry once on a new one.
      if (got_bytes) return st;
    }
    return Status::Unavailable("the server closed the connection twice");
  }

 private:
  Status Open() {
    auto fd = std::make_unique<Fd>(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd->get() < 0) return Status::Internal(std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    ::setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd->get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      return Status::Unavailable(std::string("connect: ") + std::strerror(errno));
    }
    fd_ = std::move(fd);
    pending_.clear();
    served_ = 0;
    return Status::Ok();
  }

  Status Send(const std::string& request) {
    size_t off = 0;
    while (off < request.size()) {
      const ssize_t n = ::send(fd_->get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::Unavailable(std::string("send: ") + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  // Reads at least one more byte into pending_.
  Status Fill(bool* got_bytes) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_->get(), buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::Unavailable(std::string("recv: ") + std::strerror(errno));
      if (n == 0) return Status::Unavailable("the server closed the connection");
      *got_bytes = true;
      pending_.append(buf, static_cast<size_t>(n));
      return Status::Ok();
    }
  }

  Status Receive(Reply* r, bool* got_bytes) {
    *r = Reply();
    size_t end;
    while ((end = pending_.find("\r\n\r\n")) == std::string::npos) KVMART_RETURN_IF_ERROR(Fill(got_bytes));
    const std::string head = pending_.substr(0, end);
    pending_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    r->status_line = head.substr(0, line_end);
    if (r->status_line.size() < 12 || r->status_line.rfind("HTTP/1.1 ", 0) != 0) {
      return Status::Corruption("not an HTTP/1.1 status line: " + r->status_line);
    }
    r->status = std::atoi(r->status_line.c_str() + 9);
    int64_t length = -1;
    for (size_t p = line_end; p != std::string::npos && p < head.size();) {
      const size_t start = p + 2;
      const size_t next = head.find("\r\n", start);
      const std::string line = head.substr(start, next == std::string::npos ? std::string::npos : next - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return Status::Corruption("malformed header line: " + line);
      std::string name = line.substr(0, colon), value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      const std::string lname = Lower(name);
      if (lname == "content-length") length = std::stoll(value);
      if (lname == "transfer-encoding") return Status::Unimplemented("chunked responses are not expected here");
      if (lname == "connection" && Lower(value) == "close") r->closes = true;
      r->headers.emplace_back(std::move(name), std::move(value));
      p = next;
    }
    if (length < 0) return Status::Corruption("response without Content-Length");
    while (pending_.size() < static_cast<size_t>(length)) KVMART_RETURN_IF_ERROR(Fill(got_bytes));
    r->body = pending_.substr(0, static_cast<size_t>(length));
    pending_.erase(0, static_cast<size_t>(length));
    return Status::Ok();
  }

  int port_;
  int length_;
  int served_ = 0;  // requests answered on the open connection
  std::unique_ptr<Fd> fd_;
  std::string pending_;
};

// The probe: a completion continuing `id` by one token, one token generated.
// Every probe of every caller and condition has the same bytes but for the
// key and the id, which all have the same length.
std::string ProbeRequest(int port, const std::string& key, const std::string& id, int32_t token) {
  const std::string body = "{\"prompt\":[" + std::to_string(token) +
                           "],\"max_tokens\":1,\"temperature\":0,\"kv\":{\"artifact\":\"" + id + "\"}}";
  std::string r = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n";
  if (!key.empty()) r += "Authorization: Bearer " + key + "\r\n";
  r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return r;
}

// The answer with what may differ between any two requests set aside:
//   - the artifact id, wherever it is echoed (the caller sent it);
//   - Connection and Keep-Alive: hop-by-hop headers (RFC 9110 §7.6.1) that
//     say where the request fell on its connection (httplib closes after 5);
//   - in PAYMENT-REQUIRED (base64 JSON), each quote's nonce, expiry and the
//     provider's signature over them, which are fresh for every request; their
//     lengths are kept, so a difference in length still shows.
// Everything else — status line, header names, order and values, body — is
// compared byte for byte.
std::string Normalize(const Reply& r, const std::string& id) {
  std::string out = r.status_line + "\n";
  for (const auto& [name, value] : r.headers) {
    const std::string lname = Lower(name);
    if (lname == "connection" || lname == "keep-alive") continue;
    std::string v = value;
    if (lname == "payment-required") {
      auto raw = server::Base64Decode(value);
      json j = raw.ok() ? json::parse(*raw, nullptr, false) : json();
      if (j.is_object() && j.contains("accepts") && j["accepts"].is_array()) {
        for (auto& acc : j["accepts"]) {
          if (!acc.contains("extra") || !acc["extra"].is_object()) continue;
          json& extra = acc["extra"];
          for (const char* f : {"nonce", "quote_signature"}) {
            if (extra.contains(f) && extra[f].is_string()) {
              extra[f] = "<" + std::string(f) + ", " + std::to_string(extra[f].get<std::string>().size()) + " bytes>";
            }
          }
          if (extra.contains("expires_at")) extra["expires_at"] = "<expiry, " + std::to_string(extra["expires_at"].dump().size()) + " digits>";
        }
        v = "base64 of " + j.dump() + " (" + std::to_string(value.size()) + " bytes)";
      }
    }
    out += name + ": " + v + "\n";
  }
  out += "\n" + r.body;
  ReplaceAll(&out, id, "<artifact id>");
  return out;
}

// --- Statistics --------------------------------------------------------------

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5))];
}

// sup |F_a(x) - F_b(x)| over the two empirical distributions (ties advance together).
double KsStatistic(std::vector<double> a, std::vector<double> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double n = static_cast<double>(a.size()), m = static_cast<double>(b.size());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < a.size() && j < b.size()) {
    const double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= x) ++i;
    while (j < b.size() && b[j] <= x) ++j;
    d = std::max(d, std::fabs(static_cast<double>(i) / n - static_cast<double>(j) / m));
  }
  return d;
}

double KsCritical(size_t n, size_t m) {
  const double dn = static_cast<double>(n), dm = static_cast<double>(m);
  return kKsC * std::sqrt((dn + dm) / (dn * dm));
}

// What "below the critical value" means in microseconds: the smallest
// constant delay that, added to every probe of one of two conditions whose
// times are otherwise alike, moves the empirical distribution by more than the
// critical value. Shifting a sample z by δ moves its CDF by at most the share
// of z in a window of width δ, so this is the width of the narrowest window
// holding more than that share of all the pair's probes. With sampling noise
// on top, such a delay is caught in about half of the runs; a larger one more
// often.
double Resolution(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> z(a);
  z.insert(z.end(), b.begin(), b.end());
  std::sort(z.begin(), z.end());
  const size_t k = static_cast<size_t>(std::floor(KsCritical(a.size(), b.size()) * static_cast<double>(z.size()))) + 1;
  if (k > z.size()) return std::numeric_limits<double>::infinity();
  double best = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i + k <= z.size(); ++i) best = std::min(best, z[i + k - 1] - z[i]);
  return best;
}

// --- The machine -------------------------------------------------------------

std::string CpuDescription() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  bool avx512 = false, seen_model = false;
  while (std::getline(f, line)) {
    if (!seen_model && line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      seen_model = true;
    }
    if (line.rfind("flags", 0) == 0 && line.find(" avx512f") != std::string::npos) avx512 = true;
  }
  return model + (avx512 ? " (AVX-512)" : "") + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " logical cores";
}

// Flushes every block file and advises the kernel to drop it from the page
// cache; returns (files, pages still cached) as mincore reports them after.
std::pair<size_t, size_t> EvictPageCache(const std::string& dir) {
  size_t files = 0, cached = 0;
  const long page = sysconf(_SC_PAGE_SIZE);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    Fd fd(::open(e.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) continue;
    ::fdatasync(fd.get());  // dirty pages cannot be dropped
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    ++files;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || st.st_size == 0) continue;
    void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) continue;
    std::vector<unsigned char> vec((static_cast<size_t>(st.st_size) + page - 1) / page);
    if (::mincore(map, static_cast<size_t>(st.st_size), vec.data()) == 0) {
      for (unsigned char v : vec) cached += (v & 1);
    }
    ::munmap(map, static_cast<size_t>(st.st_size));
  }
  return {files, cached};
}

// --- Setup over the API (untimed) -------------------------------------------

struct Api {
  int port;
  json Call(const std::string& method, const std::string& path, const json& body, const std::string& key,
            int* status = nullptr) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(600);
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    httplib::Result r = method == "GET"      ? c.Get(path.c_str(), h)
                         : method == "DELETE" ? c.Delete(path.c_str(), h)
                                              : c.Post(path.c_str(), h, body.dump(), "application/json");
    if (status) *status = r ? r->status : 0;
    if (!r) return nullptr;
    return json::parse(r->body, nullptr, false);
  }
  // Calls that must succeed: anything else ends the run (exit 1).
  json Must(const std::string& method, const std::string& path, const json& body, const std::string& key,
            int want) {
    int st = 0;
    json r = Call(method, path, body, key, &st);
    if (st != want) {
      throw Fatal(method + " " + path + " answered " + std::to_string(st) + " (want " + std::to_string(want) +
                  "): " + r.dump());
    }
    return r;
  }
  uint64_t Metric(const std::string& name) {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
    if (!r) return 0;
    const std::string needle = "\n" + name + " ";
    const size_t p = r->body.find(needle);
    return p == std::string::npos ? 0 : std::stoull(r->body.substr(p + needle.size()));
  }
};

struct Probe {
  Caller caller;
  Condition cond;
  std::string id;
  int place = 0;  // 1-based place on its connection (Schedule)
};

// httplib's keep_alive_max_count: requests it serves on one connection.
constexpr int kConnectionLength = 5;

// The probes in a random order (rng) in which every (caller, condition) cell
// gets each place on a connection equally often: each cell's probes are dealt
// round-robin to the places 1..L, each place's list is shuffled, and
// connection k takes the k-th probe of every place's list. `per_cell` must be
// a multiple of L. A cell's probes are then a random sample of the probes at
// each place, so a place's cost adds the same to every cell.
std::vector<Probe> Schedule(const std::vector<Probe>& cell_major, std::mt19937_64& rng) {
  std::array<std::vector<Probe>, kConnectionLength> by_place;
  std::map<std::pair<int, int>, size_t> seen;
  for (const Probe& p : cell_major) {
    const size_t i = seen[{p.caller, p.cond}]++;
    by_place[i % kConnectionLength].push_back(p);
    by_place[i % kConnectionLength].back().place = static_cast<int>(i % kConnectionLength) + 1;
  }
  for (auto& list : by_place) std::shuffle(list.begin(), list.end(), rng);
  std::vector<Probe> out;
  for (size_t k = 0; k < by_place[0].size(); ++k) {
    for (auto& list : by_place) out.push_back(list[k]);
  }
  return out;
}

struct Cell {
  std::vector<double> micros;
  std::map<std::string, size_t> answers;  // normalized answer -> count
  std::string example;                    // one raw answer (for a report)
  size_t wrong_status = 0;                // answers with another status than the API's
};


}  // namespace

int Run(Args a);

int main(int argc, char** argv) {
  Args a;
  const kvmart::bench::Usage usage(
      "usage: kvmart-bench-probe [--probes N] [--seed S] [--pool N] [--doc-tokens N]\n"
      "                          [--shape S | --model DIR] [--threads N] [--kernels auto|avx512|avx2|portable] [--json]\n"
      "Can a caller without an entitlement tell from a kv.artifact request whether an artifact exists,\n"
      "is on disk or is warm in memory? Shuffled probes of six conditions on keep-alive connections:\n"
      "answers compared byte for byte, timings by a two-sample Kolmogorov-Smirnov test at alpha = 0.01,\n"
      "and a positive control (an entitled key must tell warm from cold). Exit 0 = no probing possible.\n"
      "  --probes N      probes per caller and condition (default 2000)\n"
      "  --seed S        shuffle, documents and absent ids (default 1)\n"
      "  --pool N        artifacts (ids) per condition, probed in turn (default 32)\n"
      "  --doc-tokens N  tokens per published document (default 512)\n"
      "  --shape S       synthesize S into bench-models/S (default tiny) | --model DIR\n"
      "  --threads N     engine threads (default 2)\n"
      "  --json          the results as one JSON document on stdout (progress on stderr)\n");
  usage.HandleHelp(argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&] { return usage.Value(argc, argv, &i); };
    auto num = [&] {
      const std::string v = val();
      if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) usage.Fail(k + " takes a number");
      return std::stoull(v);
    };
    if (k == "--probes") a.probes = num();
    else if (k == "--seed") a.seed = num();
    else if (k == "--pool") a.pool = num();
    else if (k == "--doc-tokens") a.doc_tokens = num();
    else if (k == "--shape") a.shape = val();
    else if (k == "--model") a.model_dir = val();
    else if (k == "--threads") a.threads = num();
    else if (k == "--kernels") a.kernels = val();
    else if (k == "--json") a.json = true;
    else usage.Fail("unknown option " + k);
  }
  if (a.probes < 2 || a.pool < 1 || a.doc_tokens < 1) usage.Fail("--probes >= 2, --pool >= 1 and --doc-tokens >= 1");
  // Every cell gets each place on a connection equally often (Schedule).
  a.probes = (a.probes + kConnectionLength - 1) / kConnectionLength * kConnectionLength;
  if (auto k = ParseKernelPath(a.kernels); !k.ok()) usage.Fail(k.status().message());
  try {
    return Run(std::move(a));
  } catch (const Fatal& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

// The whole run; a Fatal thrown anywhere unwinds it (server stopped, files removed).
int Run(Args a) {
  auto kernels = ParseKernelPath(a.kernels);
  if (a.model_dir.empty()) {
    a.model_dir = "bench-models/" + a.shape;
    if (!std::filesystem::exists(a.model_dir + "/config.json")) {
      Say("synthesizing " + a.shape + " into " + a.model_dir + " ...");
      SynthOptions o;
      o.shape = a.shape;
      o.out_dir = a.model_dir;
      o.tokenizer_dir = KVMART_DATA_DIR;
      if (Status st = WriteSyntheticCheckpoint(o); !st.ok()) Die("synth", st);
    }
  }
  auto model = Model::Load(a.model_dir);
  if (!model.ok()) Die("model", model.status());
  std::shared_ptr<const Model> shared(std::move(model).value());
  const uint32_t vocab = shared->config().vocab_size;

  char tmpl[] = "/tmp/kvmart-bench-probe-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Die("mkdtemp", Status::Internal(std::strerror(errno)));
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string d;
    ~RemoveDir() { std::filesystem::remove_all(d); }
  } remove_dir{dir};

  EngineOptions eo;
  eo.kernels = *kernels;
  eo.threads = a.threads;
  server::ServerParts parts;
  auto engine = Engine::Create(shared, eo);
  if (!engine.ok()) Die("engine", engine.status());
  parts.engine = std::move(engine).value();
  auto tok = tokenizer::Tokenizer::Load(a.model_dir + "/tokenizer.json");
  if (!tok.ok()) Die("tokenizer", tok.status());
  parts.tokenizer = std::move(tok).value();
  market::MarketOptions mo;
  // Listings whose storage is not paid are unlisted at once (instead of after
  // 7 days): that is how an artifact comes to be held but not listed.
  mo.storage_grace_seconds = 0;
  auto market = market::SqlMarket::Open(dir + "/market.db", mo);
  if (!market.ok()) Die("market", market.status());
  auto boot = (*market)->Initialize(market::Currency());
  if (!boot.ok()) Die("market init", boot.status());
  const std::string admin = boot->admin_key;
  parts.market = std::move(market).value();
  store::StoreOptions sto;
  sto.data_dir = dir + "/store";
  auto st = store::Store::Open(sto);
  if (!st.ok()) Die("store", st.status());
  parts.store = std::move(st).value();
  auto db = server::ServerDb::Open(dir + "/server.db");
  if (!db.ok()) Die("server db", db.status());
  parts.db = std::move(db).value();
  auto key = artifact::SigningKey::Generate();
  if (!key.ok()) Die("signing key", key.status());
  parts.signing_key = std::make_unique<artifact::SigningKey>(std::move(key).value());
  server::ServerOptions so;
  so.port = 0;
  so.log_requests = false;
  so.max_queue = 64;
  so.market_maintenance_interval_s = 0;  // storage is billed once, below, not while probes run
  auto srv_or = server::Server::Create(so, std::move(parts));
  if (!srv_or.ok()) Die("server", srv_or.status());
  auto srv = std::move(srv_or).value();
  if (Status b = srv->Bind(); !b.ok()) Die("bind", b);
  std::thread run([&] { (void)srv->Run(); });
  struct StopServer {
    server::Server& s;
    std::thread& t;
    ~StopServer() {
      s.Stop();
      t.join();
    }
  } stop_server{*srv, run};
  const int port = srv->port();
  Api api{port};
  const std::string cpu = CpuDescription();
  Say("kvmart-bench-probe: " + cpu + "; model " + a.model_dir + ", " + std::to_string(a.threads) +
      " engine threads, kernels " + KernelPathName(eo.kernels));

  // --- Accounts ---
  auto account = [&](const std::string& name, const std::string& scopes, const char* deposit) {
    json r = api.Must("POST", "/v1/accounts", {{"name", name}, {"scopes", scopes}}, admin, 201);
    if (deposit) {
      api.Must("POST", "/v1/accounts/" + std::to_string(r["account_id"].get<int64_t>()) + "/deposits",
               {{"amount", deposit}}, admin, 201);
    }
    return r["api_key"].get<std::string>();
  };
  const std::string publisher = account("publisher", "publish", "10");
  const std::string lapsed = account("lapsed-publisher", "publish", nullptr);  // cannot pay for storage
  const std::string buyer = account("buyer", "buy", "1000");
  const std::string stranger = account("stranger", "buy", "10");  // could buy, has not
  const std::array<std::string, kCallers> keys = {"", stranger, buyer};

  // --- Artifacts: random documents differ from their first block on, so no
  // two artifacts share a block (a shared block would be warm for both). ---
  const size_t cold_count = std::max(a.pool, a.probes);  // the control loads each cold artifact once
  std::array<std::vector<std::string>, kConditions> pool;
  std::vector<std::string> cold_all;
  uint64_t doc_seed = a.seed * 1'000'003;
  size_t published = 0;
  const auto t_pub = Clock::now();
  auto publish = [&](const std::string& key) {
    const auto doc = RandomTextTokens(a.doc_tokens, ++doc_seed, vocab);
    json r = api.Must("POST", "/v1/artifacts", {{"tokens", doc}, {"price", {{"per_load", "0.001"}}}}, key, 201);
    if (++published % 250 == 0) Say("  published " + std::to_string(published) + " artifacts");
    return r["artifact_id"].get<std::string>();
  };
  const size_t total = 4 * a.pool + cold_count;
  Say("publishing " + std::to_string(total) + " artifacts of " + std::to_string(a.doc_tokens) + " tokens ...");
  for (size_t i = 0; i < a.pool; ++i) {
    pool[kListedWarm].push_back(publish(publisher));
    pool[kListedRemoved].push_back(publish(publisher));
    pool[kUnlistedCold].push_back(publish(lapsed));
    pool[kUnlistedWarm].push_back(publish(lapsed));
  }
  for (size_t i = 0; i < cold_count; ++i) cold_all.push_back(publish(publisher));
  pool[kListedCold].assign(cold_all.begin(), cold_all.begin() + static_cast<std::ptrdiff_t>(a.pool));
  std::mt19937_64 rng(a.seed);
  for (size_t i = 0; i < a.pool; ++i) {
    std::string id = "kv1-";
    for (int k = 0; k < 64; ++k) id += "0123456789abcdef"[rng() % 16];
    pool[kAbsent].push_back(id);
  }
  const double publish_seconds = Since(t_pub);
  Say("  " + std::to_string(total) + " published in " + std::to_string(publish_seconds) + " s");

  // --- Entitlements for the buyer ---
  const size_t warm_loads = a.probes / a.pool + 2;
  auto buy = [&](const std::string& id, size_t n) {
    api.Must("POST", "/v1/artifacts/" + id + "/purchase", {{"kind", "metered"}, {"quantity", n}}, buyer, 201);
  };
  for (const auto& id : pool[kListedWarm]) buy(id, warm_loads);
  for (const auto& id : pool[kUnlistedWarm]) buy(id, 1);
  for (const auto& id : cold_all) buy(id, 1);
  const int32_t next_token = RandomTextTokens(1, a.seed + 7, vocab)[0];
  auto load = [&](const std::string& id) {
    json r = api.Must("POST", "/v1/completions",
                      {{"prompt", {next_token}}, {"max_tokens", 1}, {"temperature", 0}, {"kv", {{"artifact", id}}}},
                      buyer, 200);
    if (r["kv_usage"]["tokens_reused"] != a.doc_tokens) {
      throw Fatal("warm-up load of " + id + " did not reuse the artifact: " + r["kv_usage"].dump());
    }
  };

  // --- Listed but not held; held but not listed. The lapsed publisher has
  // earned nothing yet, so its storage bill stays unpaid and its listings go. ---
  for (const auto& id : pool[kListedRemoved]) api.Must("DELETE", "/v1/artifacts/" + id, nullptr, admin, 200);
  auto bill = srv->market().BillStorage(0, 1);
  if (!bill.ok()) Die("storage billing", bill.status());
  if (bill->unlisted != static_cast<int64_t>(2 * a.pool)) {
    throw Fatal("storage billing unlisted " + std::to_string(bill->unlisted) + " listings, want " +
                std::to_string(2 * a.pool));
  }
  // Warm: one load each (bought entitlements still load once unlisted).
  for (const auto& id : pool[kListedWarm]) load(id);
  for (const auto& id : pool[kUnlistedWarm]) load(id);
  // The states as the API shows them: quotes for the listed, 404 for the rest.
  for (int c = 0; c < kConditions; ++c) {
    int code = 0;
    api.Call("POST", "/v1/artifacts/" + pool[c][0] + "/quote", {{"kind", "metered"}}, stranger, &code);
    const int want = c >= kListedRemoved ? 200 : 404;
    if (code != want) {
      throw Fatal(std::string("a quote for a ") + kConditionName[c] + " artifact answered " + std::to_string(code) +
                  ", want " + std::to_string(want));
    }
  }

  // Outside the probing test, for the record: what the catalog routes show an
  // unentitled key about each condition (the manifest route and the listing
  // read the store, so they tell held from not held; docs/SECURITY.md).
  json catalog = json::array();
  {
    std::set<std::string> listed_ids;
    json list = api.Must("GET", "/v1/artifacts", nullptr, stranger, 200);
    for (const auto& row : list["data"]) listed_ids.insert(row["artifact_id"].get<std::string>());
    for (int c = 0; c < kConditions; ++c) {
      int manifest = 0;
      api.Call("GET", "/v1/artifacts/" + pool[c][0], nullptr, stranger, &manifest);
      catalog.push_back({{"condition", kConditionName[c]}, {"manifest_status", manifest},
                         {"in_listing", listed_ids.count(pool[c][0]) > 0}});
    }
  }

  // --- Cold means cold: no page cache, nothing resident or in the memory tier
  // but the warm artifacts. ---
  const auto [block_files, cached_pages] = EvictPageCache(dir + "/store/blocks");
  const uint64_t raw_bytes = srv->store().Stat(pool[kListedWarm][0]).value().raw_bytes;
  const store::StoreMetrics m0 = srv->store().Metrics();
  const uint64_t resident0 = api.Metric("kvmart_resident_artifacts");
  const uint64_t attaches0 = api.Metric("kvmart_kv_attaches_total");
  Say("state: " + std::to_string(resident0) + " artifacts resident, memory tier " + std::to_string(m0.memory_bytes) +
      " bytes (warm: " + std::to_string(2 * a.pool) + " x " + std::to_string(raw_bytes) + "), " +
      std::to_string(block_files) + " block files with " + std::to_string(cached_pages) + " pages left in the page cache");
  std::vector<std::string> problems;
  if (resident0 != 2 * a.pool) problems.push_back("resident artifacts before the probes: " + std::to_string(resident0));
  if (m0.memory_bytes != 2 * a.pool * raw_bytes) {
    problems.push_back("memory tier before the probes holds " + std::to_string(m0.memory_bytes) + " bytes");
  }

  // --- The harness ---
  Connection conn(port, kConnectionLength);
  std::map<std::pair<int, int>, Cell> cells;
  size_t misplaced = 0;  // probes that did not run at their scheduled place
  auto run_probes = [&](const std::vector<Probe>& cell_major, const char* phase) {
    const std::vector<Probe> probes = Schedule(cell_major, rng);
    Say("probing (" + std::string(phase) + "): " + std::to_string(probes.size()) + " requests, shuffled ...");
    const auto t = Clock::now();
    for (const Probe& p : probes) {
      const std::string req = ProbeRequest(port, keys[p.caller], p.id, next_token);
      Reply reply;
      double secs = 0;
      int place = 0;
      if (Status s = conn.RoundTrip(req, &reply, &secs, &place); !s.ok()) Die("probe", s);
      if (place != p.place) ++misplaced;
      Cell& cell = cells[{p.caller, p.cond}];
      cell.micros.push_back(secs * 1e6);
      if (p.caller == kBuyer) {
        // The control's answers carry receipts; what matters is that each one
        // was served from the artifact.
        json j = json::parse(reply.body, nullptr, false);
        if (reply.status != 200 || !j.is_object() || j["kv_usage"]["tokens_reused"] != a.doc_tokens) {
          problems.push_back("control probe of " + p.id + " answered " + std::to_string(reply.status) + ": " +
                             reply.body.substr(0, 300));
        }
        continue;
      }
      // The answer the API documents for this caller and group (docs/API.md).
      const int want = p.cond >= kListedRemoved ? 402 : p.caller == kKeyless ? 401 : 403;
      if (reply.status != want && cell.wrong_status++ == 0) {
        problems.push_back(std::string(kCallerName[p.caller]) + ", " + kConditionName[p.cond] + ": HTTP " +
                           std::to_string(reply.status) + ", want " + std::to_string(want));
      }
      std::string norm = Normalize(reply, p.id);
      if (cell.answers.empty()) {
        cell.example = reply.status_line + "\n";
        for (const auto& [k, v] : reply.headers) cell.example += k + ": " + v + "\n";
        cell.example += "\n" + reply.body;
      }
      ++cell.answers[norm];
    }
    return Since(t);
  };

  std::vector<Probe> probes;
  for (int caller : {kKeyless, kStranger}) {
    for (int c = 0; c < kConditions; ++c) {
      for (size_t i = 0; i < a.probes; ++i) {
        probes.push_back({static_cast<Caller>(caller), static_cast<Condition>(c), pool[c][i % a.pool]});
      }
    }
  }
  const double unentitled_seconds = run_probes(probes, "no entitlement");
  const store::StoreMetrics m1 = srv->store().Metrics();
  const uint64_t attaches1 = api.Metric("kvmart_kv_attaches_total");
  if (m1.hits_memory != m0.hits_memory || m1.hits_disk != m0.hits_disk || m1.bytes_loaded != m0.bytes_loaded ||
      attaches1 != attaches0) {
    problems.push_back("probes without an entitlement touched the cache (store hits memory +" +
                       std::to_string(m1.hits_memory - m0.hits_memory) + ", disk +" +
                       std::to_string(m1.hits_disk - m0.hits_disk) + "; attaches +" +
                       std::to_string(attaches1 - attaches0) + ")");
  }

  probes.clear();
  for (size_t i = 0; i < a.probes; ++i) {
    probes.push_back({kBuyer, kListedWarm, pool[kListedWarm][i % a.pool]});
    probes.push_back({kBuyer, kListedCold, cold_all[i]});
  }
  const double control_seconds = run_probes(probes, "positive control");
  if (misplaced != 0) {
    problems.push_back(std::to_string(misplaced) + " probes ran at another place on their connection than scheduled "
                       "(the server closed connections early)");
  }
  const store::StoreMetrics m2 = srv->store().Metrics();
  const uint64_t attaches2 = api.Metric("kvmart_kv_attaches_total");
  const uint64_t blocks_per_doc = srv->store().Stat(cold_all[0]).value().num_blocks;
  const uint64_t disk_hits = m2.hits_disk - m1.hits_disk, memory_hits = m2.hits_memory - m1.hits_memory;
  const uint64_t control_attaches = attaches2 - attaches1;
  if (disk_hits != a.probes * blocks_per_doc || memory_hits != 0 || control_attaches != a.probes) {
    problems.push_back("control: cold probes read " + std::to_string(disk_hits) + " blocks from disk (want " +
                       std::to_string(a.probes * blocks_per_doc) + ") and " + std::to_string(memory_hits) +
                       " from memory (want 0); warm probes attached " + std::to_string(control_attaches) +
                       " times (want " + std::to_string(a.probes) + ")");
  }

  // --- Byte identity within each group ---
  bool identical = true;
  std::vector<std::string> differences;
  for (int caller : {kKeyless, kStranger}) {
    for (const auto& group : kGroups) {
      std::map<std::string, std::string> seen;  // normalized answer -> first cell that gave it
      for (Condition c : group) {
        for (const auto& [norm, count] : cells[{caller, c}].answers) {
          seen.emplace(norm, kConditionName[c]);
          (void)count;
        }
      }
      if (seen.size() != 1) {
        identical = false;
        std::string d = std::string(kCallerName[caller]) + ", conditions " + kConditionName[group[0]] + "/" +
                        kConditionName[group[1]] + "/" + kConditionName[group[2]] + ": " +
                        std::to_string(seen.size()) + " different answers:\n";
        for (const auto& [norm, where] : seen) d += "--- first seen in " + where + ":\n" + norm + "\n";
        differences.push_back(d);
      }
    }
  }

  // --- Timing: KS for every pair in each group, and the control ---
  struct Pair {
    Caller caller;
    Condition x, y;
    double d, critical;
    bool must_differ;
    double resolution_us;  // unentitled pairs: Resolution()
    bool ok() const { return must_differ ? d > critical : d < critical; }
  };
  std::vector<Pair> pairs;
  for (int caller : {kKeyless, kStranger}) {
    for (const auto& group : kGroups) {
      for (size_t i = 0; i < group.size(); ++i) {
        for (size_t j = i + 1; j < group.size(); ++j) {
          const auto& x = cells[{caller, group[i]}].micros;
          const auto& y = cells[{caller, group[j]}].micros;
          pairs.push_back({static_cast<Caller>(caller), group[i], group[j], KsStatistic(x, y),
                           KsCritical(x.size(), y.size()), false, Resolution(x, y)});
        }
      }
    }
  }
  {
    const auto& x = cells[{kBuyer, kListedCold}].micros;
    const auto& y = cells[{kBuyer, kListedWarm}].micros;
    pairs.push_back({kBuyer, kListedCold, kListedWarm, KsStatistic(x, y), KsCritical(x.size(), y.size()), true, 0});
  }
  bool timing_ok = true, control_ok = true;
  for (const Pair& p : pairs) (p.must_differ ? control_ok : timing_ok) &= p.ok();
  const bool pass = timing_ok && control_ok && identical && problems.empty();
  const size_t tests = pairs.size() - 1;
  const double family = 1.0 - std::pow(0.99, static_cast<double>(tests));

  // --- Report ---
  auto status_of = [&](int caller, int c) {
    const Cell& cell = cells[{caller, c}];
    if (caller == kBuyer) return std::string("200");
    return cell.example.substr(9, 3);
  };
  json out;
  out["machine"] = {{"cpu", cpu}, {"engine_threads", a.threads}, {"kernels", KernelPathName(eo.kernels)},
                    {"model", a.model_dir}};
  out["setup"] = {{"probes_per_cell", a.probes},       {"seed", a.seed},
                  {"pool", a.pool},                    {"doc_tokens", a.doc_tokens},
                  {"blocks_per_doc", blocks_per_doc},  {"artifacts_published", total},
                  {"publish_seconds", publish_seconds}, {"block_files", block_files},
                  {"pages_cached_after_advice", cached_pages},
                  {"resident_before", resident0}, {"memory_tier_bytes_before", m0.memory_bytes},
                  {"unentitled_seconds", unentitled_seconds}, {"control_seconds", control_seconds}};
  out["cells"] = json::array();
  for (int caller = 0; caller < kCallers; ++caller) {
    for (int c = 0; c < kConditions; ++c) {
      auto it = cells.find({caller, c});
      if (it == cells.end()) continue;
      const auto& v = it->second.micros;
      out["cells"].push_back({{"caller", kCallerName[caller]}, {"condition", kConditionName[c]},
                              {"status", status_of(caller, c)}, {"n", v.size()},
                              {"median_us", Percentile(v, 0.5)}, {"p90_us", Percentile(v, 0.9)}});
    }
  }
  out["pairs"] = json::array();
  for (const Pair& p : pairs) {
    out["pairs"].push_back({{"caller", kCallerName[p.caller]}, {"a", kConditionName[p.x]},
                            {"b", kConditionName[p.y]}, {"ks_d", p.d}, {"critical", p.critical},
                            {"must", p.must_differ ? "differ" : "not differ"},
                            {"resolution_us", p.must_differ ? json(nullptr) : json(p.resolution_us)},
                            {"verdict", p.must_differ ? (p.ok() ? "detected" : "NOT DETECTED")
                                                      : (p.ok() ? "indistinguishable" : "LEAK")}});
  }
  out["answers"] = json::object();  // one normalized answer per caller and group
  for (int caller : {kKeyless, kStranger}) {
    for (const auto& group : kGroups) {
      const auto& answers = cells[{caller, group[0]}].answers;
      if (!answers.empty()) {
        out["answers"][std::string(kCallerName[caller]) + ", " + (group[0] == kAbsent ? "not listed" : "listed")] =
            answers.begin()->first;
      }
    }
  }
  out["catalog_routes"] = catalog;
  out["byte_identical"] = identical;
  out["differences"] = differences;
  out["problems"] = problems;
  out["family_false_alarm_bound"] = family;
  out["pass"] = pass;

  if (a.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("kvmart-bench-probe — %s; %zu engine threads, kernels %s; model %s\n", cpu.c_str(), a.threads,
                KernelPathName(eo.kernels), a.model_dir.c_str());
    std::printf("%zu probes per cell, seed %llu, %zu ids per condition, documents of %zu tokens (%llu blocks); "
                "%zu artifacts published in %.1f s\n",
                a.probes, static_cast<unsigned long long>(a.seed), a.pool, a.doc_tokens,
                static_cast<unsigned long long>(blocks_per_doc), total, publish_seconds);
    std::printf("before the probes: %llu artifacts resident, memory tier %llu bytes (the warm ones), %zu block files "
                "with %zu pages left in the page cache%s\n\n",
                static_cast<unsigned long long>(resident0), static_cast<unsigned long long>(m0.memory_bytes),
                block_files, cached_pages,
                cached_pages == 0 ? "" : " (a file system that ignores POSIX_FADV_DONTNEED, e.g. tmpfs: "
                                         "cold probes read the disk tier from memory)");
    std::printf("%-15s %-15s %6s %6s %11s %9s\n", "caller", "condition", "status", "n", "median µs", "p90 µs");
    for (const auto& c : out["cells"]) {
      std::printf("%-15s %-15s %6s %6zu %11.1f %9.1f\n", c["caller"].get<std::string>().c_str(),
                  c["condition"].get<std::string>().c_str(), c["status"].get<std::string>().c_str(),
                  c["n"].get<size_t>(), c["median_us"].get<double>(), c["p90_us"].get<double>());
    }
    std::printf("\n%-15s %-31s %7s %9s %-18s %s\n", "caller", "pair", "KS D", "critical", "  verdict",
                "resolution");
    for (const auto& p : out["pairs"]) {
      const std::string pair = p["a"].get<std::string>() + " vs " + p["b"].get<std::string>();
      const std::string shift =
          p["resolution_us"].is_null() ? "" : std::to_string(p["resolution_us"].get<double>()).substr(0, 5) + " µs";
      std::printf("%-15s %-31s %7.4f %9.4f   %-17s %s\n", p["caller"].get<std::string>().c_str(), pair.c_str(),
                  p["ks_d"].get<double>(), p["critical"].get<double>(), p["verdict"].get<std::string>().c_str(),
                  shift.c_str());
    }
    std::printf("\nanswers byte-identical within each group: %s\n", identical ? "yes" : "NO");
    std::printf("catalog routes (not part of the test), unentitled key: GET /v1/artifacts/{id} status / in GET /v1/artifacts:\n ");
    for (const auto& c : catalog) {
      std::printf(" %s %d/%s", c["condition"].get<std::string>().c_str(), c["manifest_status"].get<int>(),
                  c["in_listing"].get<bool>() ? "yes" : "no");
    }
    std::printf("\n");
    for (const auto& d : differences) std::printf("%s\n", d.c_str());
    for (const auto& p : problems) std::printf("problem: %s\n", p.c_str());
    std::printf("(%zu comparisons at alpha = 0.01 each: a server with no leak fails one of them in at most %.1f %% of runs)\n",
                tests, 100 * family);
    std::printf("%s\n", pass ? "PASS: nothing to learn by probing; the control detects warm vs cold"
                             : "FAIL");
  }
  return pass ? 0 : 1;
}
