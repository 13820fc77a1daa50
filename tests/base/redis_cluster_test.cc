// The Redis Cluster client against the suite's cluster
// (tests/testing/redis_cluster.sh: three masters, each with a replica): the
// slot hash, URLs, commands spread over the masters, slots moved under an open
// client (MOVED, ASK), a master killed under load, and clusters that are gone.
//
// Slots are moved on the suite's cluster (and moved back); a master is killed
// only on a cluster the test starts for itself. This binary's tests hold the
// redis_topology resource lock (tests/CMakeLists.txt), and each uses keys of
// its own.
#include "base/redis_cluster.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "testing/temp_dir.h"

namespace kvmart::redis {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string StateDir() { return std::string(KVMART_BINARY_DIR) + "/testing/redis"; }

std::string ClusterUrl() {
  if (const char* env = std::getenv("KVMART_TEST_REDIS_URL")) return env;
  std::ifstream in(StateDir() + "/url");
  std::string url;
  in >> url;
  return url;
}

int64_t MillisSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

// A port nothing listens on (the kernel picked it free, then it was closed).
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RawReply = std::unique_ptr<redisReply, ReplyDeleter>;

// A plain connection to one node, for what the test does behind the client's
// back (moving slots).
class Raw {
 public:
  explicit Raw(const Endpoint& ep) : c_(redisConnect(ep.host.c_str(), ep.port)) {}
  bool ok() const { return c_ != nullptr && c_->err == 0; }
  RawReply Cmd(const std::vector<std::string>& args) {
    std::vector<const char*> p;
    std::vector<size_t> n;
    for (const auto& a : args) {
      p.push_back(a.data());
      n.push_back(a.size());
    }
    return RawReply(static_cast<redisReply*>(redisCommandArgv(c_.get(), static_cast<int>(args.size()), p.data(), n.data())));
  }
  // The reply as text (status, string or error), "" when none.
  std::string Text(const std::vector<std::string>& args) {
    RawReply r = Cmd(args);
    if (r == nullptr || r->str == nullptr) return "";
    return std::string(r->str, r->len);
  }

 private:
  std::unique_ptr<redisContext, ContextDeleter> c_;
};

std::vector<Endpoint> MasterEndpoints(const ClusterClient& client) {
  std::string url = "redis://";
  for (const auto& m : client.Masters()) url += (url.size() > 8 ? "," : "") + m;
  auto eps = ParseClusterUrl(url);
  return eps.ok() ? *eps : std::vector<Endpoint>{};
}

// Moves every key of `slot` that is still on `from` to `to` (MIGRATE).
void MigrateKeys(Raw& src, int slot, const Endpoint& to) {
  for (int round = 0; round < 100; ++round) {
    RawReply keys = src.Cmd({"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "1000"});
    ASSERT_NE(keys, nullptr);
    ASSERT_EQ(keys->type, REDIS_REPLY_ARRAY);
    if (keys->elements == 0) return;
    std::vector<std::string> args{"MIGRATE", to.host, std::to_string(to.port), "", "0", "5000", "KEYS"};
    for (size_t i = 0; i < keys->elements; ++i) args.emplace_back(keys->element[i]->str, keys->element[i]->len);
    const std::string r = src.Text(args);
    ASSERT_TRUE(r == "OK" || r == "NOKEY") << r;
  }
  FAIL() << "slot " << slot << " does not empty";
}

// The first half of a resharding step: `to` imports `slot`, `from` migrates it.
void BeginMove(int slot, const Endpoint& from, const Endpoint& to) {
  Raw src(from), dst(to);
  ASSERT_TRUE(src.ok() && dst.ok());
  const std::string src_id = src.Text({"CLUSTER", "MYID"});
  const std::string dst_id = dst.Text({"CLUSTER", "MYID"});
  ASSERT_EQ(dst.Text({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", src_id}), "OK");
  ASSERT_EQ(src.Text({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", dst_id}), "OK");
}

// The second half: the remaining keys move, and every master learns the new
// owner (the target first, then the source, as redis-cli does).
void FinishMove(int slot, const Endpoint& from, const Endpoint& to, const std::vector<Endpoint>& masters) {
  Raw src(from), dst(to);
  ASSERT_TRUE(src.ok() && dst.ok());
  MigrateKeys(src, slot, to);
  const std::string dst_id = dst.Text({"CLUSTER", "MYID"});
  std::vector<Endpoint> order{to, from};
  for (const auto& m : masters) {
    if (!(m == to) && !(m == from)) order.push_back(m);
  }
  for (const auto& m : order) {
    Raw r(m);
    ASSERT_TRUE(r.ok()) << m.ToString();
    ASSERT_EQ(r.Text({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", dst_id}), "OK") << m.ToString();
  }
}

void MoveSlot(int slot, const Endpoint& from, const Endpoint& to, const std::vector<Endpoint>& masters) {
  BeginMove(slot, from, to);
  FinishMove(slot, from, to, masters);
}

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string url = ClusterUrl();
    ASSERT_FALSE(url.empty()) << "no test Redis Cluster (ctest starts one: tests/testing/redis_cluster.sh)";
    auto seeds = ParseClusterUrl(url);
    ASSERT_TRUE(seeds.ok()) << seeds.status().ToString();
    seeds_ = *seeds;
    auto c = ClusterClient::Open(seeds_, Options());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
  }
  virtual ClusterOptions Options() const { return {}; }

  std::vector<Endpoint> seeds_;
  std::unique_ptr<ClusterClient> client_;
};

TEST(KeySlot, Crc16AndHashTagsAsRedis) {
  EXPECT_EQ(Crc16("123456789"), 0x31C3);
  EXPECT_EQ(Crc16(""), 0);
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("{user1000}.followers"));
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  // An empty first tag: the whole key is hashed, not "bar".
  EXPECT_EQ(KeySlot("foo{}{bar}"), Crc16("foo{}{bar}") % kClusterSlots);
  EXPECT_NE(KeySlot("foo{}{bar}"), KeySlot("bar"));
  // From the first '{' to the first '}' after it.
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), Crc16("{bar") % kClusterSlots);
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));
  // No closing brace: the whole key.
  EXPECT_EQ(KeySlot("foo{bar"), Crc16("foo{bar") % kClusterSlots);
  EXPECT_EQ(KeySlot(std::string_view("a\0b", 3)), Crc16(std::string_view("a\0b", 3)) % kClusterSlots);
}

TEST(ClusterUrl, GoodAndBadForms) {
  auto one = ParseClusterUrl("redis://127.0.0.1:7000");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0], (Endpoint{"127.0.0.1", 7000}));

  auto many = ParseClusterUrl("redis://127.0.0.1:7000,[::1]:7001,cache.local:65535");
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  ASSERT_EQ(many->size(), 3u);
  EXPECT_EQ((*many)[1], (Endpoint{"::1", 7001}));
  EXPECT_EQ((*many)[1].ToString(), "[::1]:7001");
  EXPECT_EQ((*many)[2], (Endpoint{"cache.local", 65535}));
  EXPECT_EQ((*many)[0].ToString(), "127.0.0.1:7000");

  EXPECT_TRUE(IsRedisUrl("redis://h:1"));
  EXPECT_FALSE(IsRedisUrl("postgresql://h/db"));
  EXPECT_FALSE(IsRedisUrl("/var/lib/kvmart"));

  for (const char* bad : {"", "redis://", "127.0.0.1:7000", "http://127.0.0.1:7000", "redis://127.0.0.1",
                          "redis://127.0.0.1:", "redis://127.0.0.1:0", "redis://127.0.0.1:65536",
                          "redis://127.0.0.1:70x0", "redis://:7000", "redis://::1:7000", "redis://[::1]7000",
                          "redis://[::1:7000", "redis://127.0.0.1:7000,", "redis://127.0.0.1:7000,,h:1",
                          "redis://user:pw@127.0.0.1:7000", "redis://127.0.0.1:7000/0"}) {
    auto r = ParseClusterUrl(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("redis URL"), std::string::npos) << r.status().ToString();
  }
  EXPECT_NE(ParseClusterUrl("redis://::1:7000").status().message().find("brackets"), std::string::npos);
  EXPECT_NE(ParseClusterUrl("redis://h:99999").status().message().find("99999"), std::string::npos);
}

TEST_F(RedisClusterTest, KeysSpreadOverEveryMaster) {
  ASSERT_EQ(client_->Masters().size(), 3u);
  std::map<std::string, int> per_master;
  for (int i = 0; i < 300; ++i) {
    const std::string key = "spread:" + std::to_string(i);
    ASSERT_TRUE(client_->Set(key, "value-" + std::to_string(i), false).value());
    const auto owner = client_->MasterOf(KeySlot(key));
    ASSERT_TRUE(owner.has_value());
    ++per_master[owner->ToString()];
  }
  EXPECT_EQ(per_master.size(), 3u);
  for (const auto& [m, n] : per_master) EXPECT_GT(n, 0) << m;
  for (int i = 0; i < 300; ++i) {
    const std::string key = "spread:" + std::to_string(i);
    auto v = client_->Get(key);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    ASSERT_TRUE(v->has_value()) << key;
    EXPECT_EQ(**v, "value-" + std::to_string(i));
    EXPECT_EQ(client_->Del(key).value(), 1);
    EXPECT_FALSE(client_->Get(key).value().has_value());
    EXPECT_EQ(client_->Del(key).value(), 0);
  }
  const ClusterStats s = client_->Stats();
  EXPECT_GE(s.commands, 1200u);
  EXPECT_EQ(s.failures, 0u);
  EXPECT_GT(s.command_micros, 0u);
}

TEST_F(RedisClusterTest, SetIfAbsentKeepsTheFirstValue) {
  const std::string key = "nx:{k}";
  (void)client_->Del(key);
  EXPECT_TRUE(client_->Set(key, "first", true).value());
  EXPECT_FALSE(client_->Set(key, "second", true).value());
  EXPECT_EQ(client_->Get(key).value(), std::optional<std::string>("first"));
  EXPECT_TRUE(client_->Set(key, "third", false).value());
  EXPECT_EQ(client_->Get(key).value(), std::optional<std::string>("third"));
  EXPECT_EQ(client_->Del(key).value(), 1);
}

TEST_F(RedisClusterTest, BinaryKeysAndValuesAndALargeValue) {
  static constexpr char kKey[] = "bin:\0key\r\n";
  static constexpr char kValue[] = "\0\x01\xff\r\n$-1\r\n\0";
  const std::string key(kKey, sizeof(kKey) - 1);
  const std::string value(kValue, sizeof(kValue) - 1);
  ASSERT_EQ(value.size(), 11u);
  ASSERT_TRUE(client_->Set(key, value, false).value());
  EXPECT_EQ(client_->Get(key).value(), std::optional<std::string>(value));
  EXPECT_EQ(client_->Del(key).value(), 1);

  std::string big(24u << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  ASSERT_TRUE(client_->Set("big:{24MiB}", big, false).value());
  auto got = client_->Get("big:{24MiB}");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->size(), big.size());
  EXPECT_TRUE(**got == big);
  EXPECT_EQ(client_->Del("big:{24MiB}").value(), 1);
}

TEST_F(RedisClusterTest, ServerErrorsAreRepliesAndBadCallsInvalidArgument) {
  ASSERT_TRUE(client_->Set("err:{k}", "not a number", false).value());
  auto r = client_->Command({"INCR", "err:{k}"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->type, Reply::Type::kError);
  EXPECT_NE(r->str.find("not an integer"), std::string::npos) << r->str;
  auto arr = client_->Command({"MGET", "err:{k}", "err:{k}:absent"});
  ASSERT_TRUE(arr.ok());
  ASSERT_EQ(arr->type, Reply::Type::kArray);
  ASSERT_EQ(arr->elements.size(), 2u);
  EXPECT_EQ(arr->elements[0].str, "not a number");
  EXPECT_TRUE(arr->elements[1].is_nil());
  EXPECT_EQ(client_->Command({"GET"}, 1).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(client_->Command({}, 0).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(client_->Del("err:{k}").value(), 1);
}

TEST_F(RedisClusterTest, ThreadsShareOneClient) {
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        const std::string key = "threads:" + std::to_string(t) + ":" + std::to_string(i);
        const std::string val = std::to_string(t * 1000 + i);
        auto s = client_->Set(key, val, false);
        auto g = client_->Get(key);
        auto d = client_->Del(key);
        if (!s.ok() || !*s || !g.ok() || *g != std::optional<std::string>(val) || !d.ok() || *d != 1) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(client_->Stats().commands, 6u * 150 * 3);
}

TEST_F(RedisClusterTest, HealthIsOkOnTheLiveCluster) {
  EXPECT_TRUE(client_->CheckHealth().ok()) << client_->CheckHealth().ToString();
  for (int slot : {0, 5000, 9000, kClusterSlots - 1}) EXPECT_TRUE(client_->MasterOf(slot).has_value());
  EXPECT_FALSE(client_->MasterOf(-1).has_value());
  EXPECT_FALSE(client_->MasterOf(kClusterSlots).has_value());
}

// A slot moved for good under an open client: the old owner answers MOVED,
// the client follows it and rereads the map.
TEST_F(RedisClusterTest, MovedSlotIsFollowed) {
  const std::string key = "{moved}key";
  const int slot = KeySlot(key);
  ASSERT_TRUE(client_->Set(key, "before the move", false).value());
  const Endpoint from = *client_->MasterOf(slot);
  const std::vector<Endpoint> masters = MasterEndpoints(*client_);
  ASSERT_EQ(masters.size(), 3u);
  const Endpoint to = masters[0] == from ? masters[1] : masters[0];

  ASSERT_NO_FATAL_FAILURE(MoveSlot(slot, from, to, masters));
  const uint64_t refreshes = client_->Stats().topology_refreshes;
  EXPECT_EQ(client_->Get(key).value(), std::optional<std::string>("before the move"));
  EXPECT_GT(client_->Stats().moved, 0u);
  EXPECT_GT(client_->Stats().topology_refreshes, refreshes);
  EXPECT_EQ(client_->MasterOf(slot), std::optional<Endpoint>(to));
  EXPECT_TRUE(client_->Set(key, "after the move", false).value());

  // Back where it was, so the other tests see the cluster as it started.
  ASSERT_NO_FATAL_FAILURE(MoveSlot(slot, to, from, masters));
  EXPECT_EQ(client_->Get(key).value(), std::optional<std::string>("after the move"));
  EXPECT_EQ(client_->MasterOf(slot), std::optional<Endpoint>(from));
  EXPECT_EQ(client_->Del(key).value(), 1);
}

// A slot half migrated: a key already at the target is answered there after
// ASK + ASKING, keys still at the source are served by it, and the map is
// left alone.
TEST_F(RedisClusterTest, AskDuringMigrationIsFollowedOnce) {
  const std::string k1 = "{ask}one", k2 = "{ask}two", k3 = "{ask}three";
  const int slot = KeySlot(k1);
  ASSERT_TRUE(client_->Set(k1, "v1", false).value());
  ASSERT_TRUE(client_->Set(k2, "v2", false).value());
  (void)client_->Del(k3);
  const Endpoint from = *client_->MasterOf(slot);
  const std::vector<Endpoint> masters = MasterEndpoints(*client_);
  ASSERT_EQ(masters.size(), 3u);
  const Endpoint to = masters[0] == from ? masters[1] : masters[0];

  ASSERT_NO_FATAL_FAILURE(BeginMove(slot, from, to));
  {
    Raw src(from);
    ASSERT_EQ(src.Text({"MIGRATE", to.host, std::to_string(to.port), k1, "0", "5000"}), "OK");
  }
  EXPECT_EQ(client_->Get(k1).value(), std::optional<std::string>("v1"));
  EXPECT_EQ(client_->Stats().asked, 1u);
  EXPECT_EQ(client_->Get(k2).value(), std::optional<std::string>("v2"));
  EXPECT_EQ(client_->Stats().asked, 1u);
  // A new key of a migrating slot is created at the target.
  EXPECT_TRUE(client_->Set(k3, "v3", false).value());
  EXPECT_EQ(client_->Stats().asked, 2u);
  EXPECT_EQ(client_->MasterOf(slot), std::optional<Endpoint>(from));
  EXPECT_EQ(client_->Stats().moved, 0u);

  ASSERT_NO_FATAL_FAILURE(FinishMove(slot, from, to, masters));
  EXPECT_EQ(client_->Get(k2).value(), std::optional<std::string>("v2"));
  EXPECT_GT(client_->Stats().moved, 0u);
  EXPECT_EQ(client_->Get(k3).value(), std::optional<std::string>("v3"));
  ASSERT_NO_FATAL_FAILURE(MoveSlot(slot, to, from, masters));
  for (const auto& k : {k1, k2, k3}) EXPECT_EQ(client_->Del(k).value(), 1) << k;
}

TEST(RedisDeadCluster, OpenOnNothingIsUnavailableWithinTheConnectTimeouts) {
  ClusterOptions o;
  o.connect_timeout = milliseconds(300);
  const std::vector<Endpoint> seeds{{"127.0.0.1", UnusedPort()}, {"127.0.0.1", UnusedPort()}};
  const auto t0 = Clock::now();
  auto c = ClusterClient::Open(seeds, o);
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(c.status().message().find(seeds[0].ToString()), std::string::npos) << c.status().ToString();
  EXPECT_LT(MillisSince(t0), 2 * 300 + 500);
  EXPECT_EQ(ClusterClient::Open({}, o).status().code(), Status::Code::kInvalidArgument);
}

// A one-node cluster of the test's own (all slots on one master), which a
// test may break or kill without disturbing the suite's cluster.
class OneNodeCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    const int port = UnusedPort(), bus = UnusedPort();
    ASSERT_TRUE(port > 0 && bus > 0 && port != bus);
    node_ = Endpoint{"127.0.0.1", port};
    const std::string cmd = "redis-server --port " + std::to_string(port) + " --cluster-port " +
                            std::to_string(bus) +
                            " --bind 127.0.0.1 --protected-mode no --cluster-enabled yes --cluster-config-file '" +
                            dir_.Sub("nodes.conf") + "' --save '' --appendonly no --dir '" + dir_.path() +
                            "' --daemonize yes --pidfile '" + dir_.Sub("redis.pid") + "' --logfile '" +
                            dir_.Sub("redis.log") + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "redis-server is missing? run `make setup`: " << cmd;
    for (int i = 0; i < 100 && pid_ == 0; ++i) {
      std::ifstream in(dir_.Sub("redis.pid"));
      in >> pid_;
      if (pid_ == 0) std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_GT(pid_, 0);
    bool up = false;
    for (int i = 0; i < 200 && !up; ++i) {
      Raw r(node_);
      if (r.ok()) {
        (void)r.Cmd({"CLUSTER", "ADDSLOTSRANGE", "0", std::to_string(kClusterSlots - 1)});
        up = r.Text({"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
      }
      if (!up) std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_TRUE(up) << "the one-node cluster on " << port << " does not come up";
  }
  void TearDown() override { Kill(); }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    pid_ = 0;
    // Until the port refuses connections.
    for (int i = 0; i < 100 && Raw(node_).ok(); ++i) std::this_thread::sleep_for(milliseconds(20));
  }

  static ClusterOptions SmallOptions(milliseconds budget) {
    ClusterOptions o;
    o.connect_timeout = milliseconds(200);
    o.command_timeout = milliseconds(500);
    o.retry_budget = budget;
    return o;
  }

  kvmart::testing::TempDir dir_;
  Endpoint node_;
  pid_t pid_ = 0;
};

// Every node killed under an open client: commands give up with Unavailable
// once the retry budget is spent, naming the node.
TEST_F(OneNodeCluster, CommandsAfterEveryNodeDiedAreUnavailableWithinTheBudget) {
  auto c = ClusterClient::Open({node_}, SmallOptions(milliseconds(1000)));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto& client = *c;
  ASSERT_TRUE(client->Set("dead:{k}", "v", false).value());
  ASSERT_TRUE(client->CheckHealth().ok());

  Kill();
  const auto t0 = Clock::now();
  auto g = client->Get("dead:{k}");
  const int64_t ms = MillisSince(t0);
  EXPECT_EQ(g.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(g.status().message().find(node_.ToString()), std::string::npos) << g.status().ToString();
  EXPECT_GE(ms, 500);
  EXPECT_LT(ms, 1000 + 1000);
  EXPECT_EQ(client->Stats().failures, 1u);
  EXPECT_GT(client->Stats().retries, 0u);
  const Status h = client->CheckHealth();
  EXPECT_EQ(h.code(), Status::Code::kUnavailable);
  EXPECT_NE(h.message().find(node_.ToString()), std::string::npos) << h.ToString();
  // Open against it now: Unavailable too.
  EXPECT_EQ(ClusterClient::Open({node_}, SmallOptions(milliseconds(1000))).status().code(),
            Status::Code::kUnavailable);
}

// A cluster that does not cover every slot answers CLUSTERDOWN: retried with
// backoff until the slot is served again, or Unavailable with the error once
// the budget is spent. Open refuses such a cluster.
TEST_F(OneNodeCluster, ClusterDownIsRetriedUntilTheSlotsAreBack) {
  const std::string key = "down:{k}";
  const int hole = (KeySlot(key) + 1) % kClusterSlots;  // not the key's own slot
  auto patient = ClusterClient::Open({node_}, SmallOptions(milliseconds(10000)));
  ASSERT_TRUE(patient.ok()) << patient.status().ToString();
  auto hasty = ClusterClient::Open({node_}, SmallOptions(milliseconds(500)));
  ASSERT_TRUE(hasty.ok()) << hasty.status().ToString();
  ASSERT_TRUE((*patient)->Set(key, "v", false).value());

  Raw admin(node_);
  ASSERT_TRUE(admin.ok());
  ASSERT_EQ(admin.Text({"CLUSTER", "DELSLOTS", std::to_string(hole)}), "OK");
  for (int i = 0; i < 100 && admin.Text({"CLUSTER", "INFO"}).find("cluster_state:fail") == std::string::npos; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  auto open = ClusterClient::Open({node_}, SmallOptions(milliseconds(1000)));
  EXPECT_EQ(open.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(open.status().message().find("16383 of 16384"), std::string::npos) << open.status().ToString();

  auto t0 = Clock::now();
  auto given_up = (*hasty)->Get(key);
  EXPECT_EQ(given_up.status().code(), Status::Code::kUnavailable);
  EXPECT_NE(given_up.status().message().find("CLUSTERDOWN"), std::string::npos) << given_up.status().ToString();
  EXPECT_LT(MillisSince(t0), 500 + 1000);
  EXPECT_GT((*hasty)->Stats().retries, 0u);

  std::thread repair([&] {
    std::this_thread::sleep_for(milliseconds(400));
    Raw r(node_);
    (void)r.Cmd({"CLUSTER", "ADDSLOTS", std::to_string(hole)});
  });
  t0 = Clock::now();
  auto got = (*patient)->Get(key);
  const int64_t ms = MillisSince(t0);
  repair.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, std::optional<std::string>("v"));
  EXPECT_GE(ms, 300);
  EXPECT_GT((*patient)->Stats().retries, 0u);
  EXPECT_EQ((*patient)->Stats().failures, 0u);
}

// Runs a shell command; its exit status, with stdout and stderr in *out.
int RunShell(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[256];
  while (std::fgets(buf, sizeof(buf), p) != nullptr) *out += buf;
  return ::pclose(p);
}

const std::string kClusterScript = "'" KVMART_SOURCE_DIR "/tests/testing/redis_cluster.sh'";

// A master SIGKILLed while a thread writes and reads keys of its slot: the
// replica is promoted, the client rides through on retries and map
// refreshes, and nothing fails. Replication is asynchronous, so a write
// acknowledged just before the kill may be lost; a value read back must
// still be the one written.
//
// The test runs on a cluster of its own (the same script, another state
// directory): other test binaries share the suite's cluster and must not see
// a master die under them.
class RedisFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    state_ = tmp_.Sub("cluster");
    std::string out;
    ASSERT_EQ(RunShell(kClusterScript + " start '" + state_ + "'", &out), 0) << out;
    std::ifstream in(state_ + "/url");
    std::string url;
    in >> url;
    auto seeds = ParseClusterUrl(url);
    ASSERT_TRUE(seeds.ok()) << seeds.status().ToString();
    ClusterOptions o;
    o.retry_budget = milliseconds(30000);  // node timeout 2 s; a promotion takes a few
    auto c = ClusterClient::Open(*seeds, o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
  }
  void TearDown() override {
    client_.reset();
    std::string out;
    EXPECT_EQ(RunShell(kClusterScript + " stop '" + state_ + "'", &out), 0) << out;
  }

  kvmart::testing::TempDir tmp_;
  std::string state_;
  std::unique_ptr<ClusterClient> client_;
};

TEST_F(RedisFailoverTest, KilledMasterIsReplacedByItsReplica) {
  const int slot = KeySlot("{failover}");
  const Endpoint victim = *client_->MasterOf(slot);
  std::atomic<bool> stop{false};
  std::atomic<int> ops{0}, errors{0}, wrong{0};
  std::string first_error;
  std::thread worker([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "{failover}" + std::to_string(i % 50);
      const std::string val = "v" + std::to_string(i);
      auto s = client_->Set(key, val, false);
      auto g = client_->Get(key);
      if (!s.ok() || !g.ok()) {
        if (errors++ == 0) first_error = (!s.ok() ? s.status() : g.status()).ToString();
      } else if (g->has_value() && **g != val) {
        ++wrong;
      }
      ++ops;
    }
  });
  std::this_thread::sleep_for(milliseconds(300));
  std::string out;
  const int rc = RunShell(kClusterScript + " kill-master '" + state_ + "' " + std::to_string(slot), &out);
  const int before = ops.load();
  for (int i = 0; i < 100 && ops.load() < before + 20; ++i) std::this_thread::sleep_for(milliseconds(50));
  stop = true;
  worker.join();
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(std::stoi(out), victim.port);

  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(ops.load(), before + 20);
  const ClusterStats s = client_->Stats();
  EXPECT_GT(s.retries, 0u);
  EXPECT_GT(s.topology_refreshes, 1u);
  EXPECT_EQ(s.failures, 0u);
  const auto now = client_->MasterOf(slot);
  ASSERT_TRUE(now.has_value());
  EXPECT_NE(*now, victim);
  ASSERT_TRUE(client_->Set("{failover}after", "ok", false).value());
  EXPECT_EQ(client_->Get("{failover}after").value(), std::optional<std::string>("ok"));
  EXPECT_TRUE(client_->CheckHealth().ok()) << client_->CheckHealth().ToString();
}

}  // namespace
}  // namespace kvmart::redis
