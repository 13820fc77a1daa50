// `kvmart store put|ls|stat|pin|gc|verify` over the store of a data directory
// (DIR/store, cli/data_dir.h; the store of docs/STORE.md), with its catalog
// and block tier shared by many nodes when --db / --blocks name them.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "base/postgres_db.h"
#include "base/redis_cluster.h"
#include "store/redis_tier.h"
#include "store/store.h"

namespace kvmart::cli {

StatusOr<store::StoreOptions> NodeStoreOptions(const std::string& data_flag, const std::string& db_flag,
                                               const std::string& blocks_flag) {
  const DataDir data = ResolveDataDir(data_flag);
  store::StoreOptions o;
  o.data_dir = data.Store();
  const std::string db = data.MarketLocation(db_flag);
  if (postgres::IsPostgresUrl(db)) o.catalog = db;
  const std::string blocks = DataDir::SharedBlocksLocation(blocks_flag);
  if (!blocks.empty()) {
    if (!redis::IsRedisUrl(blocks))
      return Status::InvalidArgument("--blocks must be redis://host:port[,host:port…], got " + blocks);
    if (o.catalog.empty())
      return Status::InvalidArgument(
          "--blocks needs a catalog the nodes share: give --db postgresql://… (a SQLite catalog is one node's)");
    KVMART_ASSIGN_OR_RETURN(o.shared_blocks, store::RedisBlockTier::Open(blocks));
  }
  return o;
}

StatusOr<std::unique_ptr<store::Store>> OpenStore(const std::string& data_flag, const std::string& db_flag,
                                                  const std::string& blocks_flag) {
  KVMART_ASSIGN_OR_RETURN(store::StoreOptions o, NodeStoreOptions(data_flag, db_flag, blocks_flag));
  o.memory_budget_bytes = 1ull << 30;
  return store::Store::Open(o);
}

namespace {

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  return 1;
}

std::string Human(uint64_t b) {
  char buf[32];
  if (b < 10 * 1024) std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(b));
  else if (b < 10ull * 1024 * 1024) std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  else if (b < 10ull * 1024 * 1024 * 1024) std::snprintf(buf, sizeof(buf), "%.1f MiB", b / (1024.0 * 1024.0));
  else std::snprintf(buf, sizeof(buf), "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

nlohmann::json InfoJson(const store::ArtifactInfo& i) {
  nlohmann::json j = {{"artifact_id", i.artifact_id},   {"publisher", i.publisher_hex},
                      {"profile_digest", i.profile_digest_hex}, {"token_count", i.token_count},
                      {"num_blocks", i.num_blocks},     {"raw_bytes", i.raw_bytes},
                      {"stored_bytes", i.stored_bytes}, {"codec", i.codec},
                      {"created_at", i.created_at},     {"pinned", i.pinned}};
  j["title"] = i.title ? nlohmann::json(*i.title) : nlohmann::json(nullptr);
  j["expires_at_unix"] = i.expires_at_unix ? nlohmann::json(*i.expires_at_unix) : nlohmann::json(nullptr);
  return j;
}

struct StoreArgs {
  std::string data, db, blocks;
  std::string file, id, publisher;
  bool json = false, off = false, all = false;
  int64_t ttl = -1;
  uint64_t quota_bytes = 0;
};

int Put(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  if (Status st = (*s)->PutFile(a.file); !st.ok()) return Fail(st);
  auto reader = artifact::ArtifactReader::OpenFile(a.file);  // already verified by PutFile
  if (!reader.ok()) return Fail(reader.status());
  auto info = (*s)->Stat(reader->manifest().artifact_id);
  if (!info.ok()) return Fail(info.status());
  std::cout << "stored " << info->artifact_id << " (" << info->token_count << " tokens, " << info->num_blocks
            << " blocks, " << Human(info->stored_bytes) << ")\n";
  return 0;
}

int Ls(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  auto list = (*s)->List();
  if (a.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& i : list) arr.push_back(InfoJson(i));
    std::cout << arr.dump(2) << "\n";
    return 0;
  }
  std::printf("%-72s %8s %7s %10s %-8s %s\n", "ARTIFACT", "TOKENS", "BLOCKS", "STORED", "CODEC", "TITLE");
  for (const auto& i : list) {
    std::string title = i.title.value_or("");
    if (i.pinned) title = "[pinned] " + title;
    std::printf("%-72s %8llu %7u %10s %-8s %s\n", i.artifact_id.c_str(), static_cast<unsigned long long>(i.token_count),
                i.num_blocks, Human(i.stored_bytes).c_str(), i.codec.c_str(), title.c_str());
  }
  auto m = (*s)->Metrics();
  std::printf("%llu artifacts, %llu blocks, %s on disk\n", static_cast<unsigned long long>(m.artifacts),
              static_cast<unsigned long long>(m.blocks), Human(m.disk_bytes).c_str());
  return 0;
}

int StatCmd(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  auto info = (*s)->Stat(a.id);
  if (!info.ok()) return Fail(info.status());
  std::cout << InfoJson(*info).dump(2) << "\n";
  return 0;
}

int PinCmd(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  if (Status st = (*s)->Pin(a.id, !a.off); !st.ok()) return Fail(st);
  if (a.ttl >= 0) {
    std::optional<std::chrono::seconds> ttl;
    if (a.ttl > 0) ttl = std::chrono::seconds(a.ttl);
    if (Status st = (*s)->SetTtl(a.id, ttl); !st.ok()) return Fail(st);
  }
  std::cout << (a.off ? "unpinned " : "pinned ") << a.id << "\n";
  return 0;
}

int GcCmd(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  auto r = (*s)->Gc();
  if (!r.ok()) return Fail(r.status());
  std::cout << "expired artifacts removed: " << r->expired_artifacts << "\nblock files removed: " << r->blocks_removed
            << " (" << Human(r->bytes_freed) << ")\nleftovers removed: " << r->leftovers_removed << "\n";
  return 0;
}

int RmCmd(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  if (Status st = (*s)->Remove(a.id); !st.ok()) return Fail(st);
  std::cout << "removed " << a.id << " (blocks no other artifact shares are deleted)\n";
  return 0;
}

int QuotaCmd(const StoreArgs& a) {
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  if (Status st = (*s)->SetPublisherQuota(a.publisher, a.quota_bytes); !st.ok()) return Fail(st);
  std::cout << "quota of publisher " << a.publisher << ": "
            << (a.quota_bytes == 0 ? std::string("unlimited") : Human(a.quota_bytes)) << "\n";
  return 0;
}

int VerifyCmd(const StoreArgs& a) {
  if (a.all == !a.id.empty()) return Fail(Status::InvalidArgument("give either --all or an artifact id"));
  auto s = OpenStore(a.data, a.db, a.blocks);
  if (!s.ok()) return Fail(s.status());
  auto r = (*s)->Verify(a.all ? "" : a.id);
  if (!r.ok()) return Fail(r.status());
  for (const auto& p : r->problems) std::cout << "BAD " << p << "\n";
  std::cout << r->blocks_checked << " blocks checked, " << r->blocks_bad << " bad\n";
  return r->blocks_bad == 0 ? 0 : 1;
}

}  // namespace

void RegisterStoreCommands(CLI::App& app, int* exit_code) {
  auto* st = app.add_subcommand("store", "the artifact store: put, ls, stat, pin, rm, quota, gc, verify");
  st->require_subcommand(1);
  auto args = std::make_shared<StoreArgs>();
  auto data_flag = [args](CLI::App* c) {
    c->add_option("--data", args->data, "data directory; the store is DIR/store (default $KVMART_HOME, else ~/.local/share/kvmart)");
    c->add_option("--db", args->db,
                  "a postgresql:// URL: the catalog the nodes share, in the market's database "
                  "(default $KVMART_DB; otherwise DIR/store/catalog.sqlite)");
    c->add_option("--blocks", args->blocks,
                  "redis://host:port[,host:port…]: the block tier the nodes share (default $KVMART_BLOCKS; needs --db)");
  };
  auto* put = st->add_subcommand("put", "verify a .kva file and add it to the store");
  put->add_option("file", args->file, ".kva file")->required();
  data_flag(put);
  put->callback([args, exit_code] { *exit_code = Put(*args); });

  auto* ls = st->add_subcommand("ls", "list stored artifacts");
  ls->add_flag("--json", args->json, "print the catalog rows as JSON");
  data_flag(ls);
  ls->callback([args, exit_code] { *exit_code = Ls(*args); });

  auto* stat = st->add_subcommand("stat", "one artifact's catalog row (JSON)");
  stat->add_option("id", args->id, "artifact id")->required();
  data_flag(stat);
  stat->callback([args, exit_code] { *exit_code = StatCmd(*args); });

  auto* pin = st->add_subcommand("pin", "pin an artifact (never expires or is collected); --off unpins");
  pin->add_option("id", args->id, "artifact id")->required();
  pin->add_flag("--off", args->off, "unpin");
  pin->add_option("--ttl", args->ttl, "also set a TTL in seconds (0 clears it)");
  data_flag(pin);
  pin->callback([args, exit_code] { *exit_code = PinCmd(*args); });

  auto* rm = st->add_subcommand("rm", "remove an artifact (its market listing and entitlements stay)");
  rm->add_option("id", args->id, "artifact id")->required();
  data_flag(rm);
  rm->callback([args, exit_code] { *exit_code = RmCmd(*args); });

  auto* quota = st->add_subcommand("quota", "cap the stored bytes of one publisher (the key that signed its manifests)");
  quota->add_option("--publisher", args->publisher, "publisher public key, 64 hex digits")->required();
  quota->add_option("--bytes", args->quota_bytes, "stored-byte limit; 0 = unlimited")->required();
  data_flag(quota);
  quota->callback([args, exit_code] { *exit_code = QuotaCmd(*args); });

  auto* gc = st->add_subcommand("gc", "remove expired artifacts, unreferenced blocks and leftovers");
  data_flag(gc);
  gc->callback([args, exit_code] { *exit_code = GcCmd(*args); });

  auto* verify = st->add_subcommand("verify", "re-read blocks from disk and check XXH3-128, decode and SHA-256");
  verify->add_flag("--all", args->all, "every block in the store");
  verify->add_option("id", args->id, "artifact id");
  data_flag(verify);
  verify->callback([args, exit_code] { *exit_code = VerifyCmd(*args); });
}

}  // namespace kvmart::cli
