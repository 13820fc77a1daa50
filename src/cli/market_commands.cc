// `kvmart market ...`: the market over a local SQLite file (DIR/market.db) with
// the provider's Ed25519 key in DIR/provider.key (hex, mode 0600); DIR is the
// data directory of every command (cli/data_dir.h).
//
// The API key comes from --key or $KVMART_API_KEY. Mutating commands take
// --idem KEY; without it a fresh random key is used, so pass --idem to make a
// retried command safe to repeat.
#include <sodium.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "base/postgres_db.h"
#include "market/audit.h"
#include "market/sql_market.h"

namespace kvmart::cli {

namespace {

using nlohmann::json;
namespace mk = kvmart::market;

struct Opts {
  std::string data;
  bool json_out = false;
  std::string key;
  std::string idem;
  bool sync_full = false;
  std::string currency = "USD";
  // command arguments
  std::string name, scopes = "buy", amount, artifact, kind = "metered", per_load, bundle_price, unlimited_price;
  std::string file = "-", public_key;
  std::string credit_limit = "0";  // decimal, like every amount on the command line
  int64_t key_id = 0;
  int64_t account = 0, tokens = 0, bytes = 0, bundle_loads = 0, unlimited_seconds = 0, quantity = 1;
  int64_t from = 0, to = INT64_MAX, seconds = 0, load = 0;
  std::string destination, db, visibility;
  int64_t period = 3600, period_start = -1;
  bool check = false;
};

StatusOr<std::unique_ptr<mk::SqlMarket>> OpenMarket(const Opts& o, bool create) {
  KVMART_ASSIGN_OR_RETURN(mk::ProviderKey key, LoadOrCreateProviderKey(DataDir{o.data}, create));
  mk::MarketOptions opt;
  opt.provider_key = key;
  opt.synchronous_full = o.sync_full;
  return mk::SqlMarket::Open(DataDir{o.data}.MarketLocation(o.db), opt);
}

std::string Idem(const Opts& o) {
  if (!o.idem.empty()) return o.idem;
  unsigned char r[16];
  randombytes_buf(r, sizeof r);
  return "cli-" + ToHex(r, sizeof r);
}

std::string ApiKey(const Opts& o) {
  if (!o.key.empty()) return o.key;
  const char* env = std::getenv("KVMART_API_KEY");
  return env != nullptr ? env : "";
}

json MoneyJ(const mk::Money& m) { return json{{"micros", m.micros()}, {"amount", m.DecimalString()}, {"currency", m.currency().str()}}; }

StatusOr<mk::Money> ParseMoney(const std::string& s, const std::string& currency) {
  KVMART_ASSIGN_OR_RETURN(mk::Currency c, mk::Currency::Parse(currency));
  return mk::Money::Parse(s, c);
}

// Prints either the JSON or the human text; returns the exit code.
void Emit(const Opts& o, const json& j, const std::string& text) {
  if (o.json_out) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << text;
  }
}

int Fail(const Status& s) {
  std::cerr << "error: " << s.ToString() << "\n";
  return 1;
}

json QuoteJ(const mk::Quote& q) {
  return json{{"artifact_id", q.artifact_id}, {"kind", mk::PurchaseKindName(q.kind)}, {"tokens", q.tokens},
              {"loads", q.loads}, {"upfront", MoneyJ(q.upfront)}, {"per_load", MoneyJ(q.per_load)},
              {"provider_fee", MoneyJ(q.provider_fee)}, {"expires_at", q.expires_at},
              {"fresh_prefill_cost", MoneyJ(q.fresh_prefill_cost)}};
}

std::string QuoteText(const mk::Quote& q) {
  std::ostringstream s;
  s << q.artifact_id << " (" << q.tokens << " tokens) " << mk::PurchaseKindName(q.kind) << ": ";
  if (q.kind == mk::PurchaseKind::kMetered) {
    s << q.per_load.ToString() << " per load, up to " << q.loads << " loads";
  } else {
    s << q.upfront.ToString() << " upfront, " << (q.loads == 0 ? std::string("unlimited") : std::to_string(q.loads)) << " loads";
  }
  if (q.expires_at != 0) s << ", until " << q.expires_at;
  s << " (a fresh prefill would cost " << q.fresh_prefill_cost.ToString() << ")\n";
  return s.str();
}

// Runs fn with a shared Opts and stores its exit status.
using Body = std::function<int(const Opts&)>;

CLI::App* Leaf(CLI::App* parent, const std::string& name, const std::string& desc, const std::shared_ptr<Opts>& o,
               int* exit_code, Body body) {
  CLI::App* c = parent->add_subcommand(name, desc);
  c->add_option("--data", o->data, "data directory (default $KVMART_HOME, else ~/.local/share/kvmart)");
  c->add_flag("--json", o->json_out, "JSON output");
  c->add_option("--key", o->key, "API key (default: $KVMART_API_KEY)");
  c->add_flag("--sync-full", o->sync_full, "fsync every commit (synchronous=FULL)");
  c->add_option("--db", o->db, "market database: a SQLite file or postgresql://… (default $KVMART_DB, else DIR/market.db)");
  c->callback([o, exit_code, body] {
    o->data = ResolveDataDir(o->data).root;
    if (sodium_init() < 0) {
      *exit_code = Fail(Status::Internal("libsodium failed to initialise"));
      return;
    }
    *exit_code = body(*o);
  });
  return c;
}

void AddIdem(CLI::App* c, Opts* o) { c->add_option("--idem", o->idem, "idempotency key (default: random)"); }

}  // namespace

void RegisterMarketCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<Opts>();
  Opts* p = o.get();
  CLI::App* market = app.add_subcommand("market", "accounts, prices, purchases, metered loads, ledger, receipts");
  market->require_subcommand(1);

  auto* init = Leaf(market, "init", "create the market database, provider key and an admin API key", o, exit_code,
                    [](const Opts& o) {
    auto m = OpenMarket(o, /*create=*/true);
    if (!m.ok()) return Fail(m.status());
    auto cur = mk::Currency::Parse(o.currency);
    if (!cur.ok()) return Fail(cur.status());
    const DataDir dir{o.data};
    auto b = InitializeMarket(**m, *cur, dir);
    if (!b.ok()) return Fail(b.status());
    Emit(o, json{{"provider_account", b->provider_account}, {"admin_key", b->admin_key}, {"provider_public_key", b->provider_public_key},
                 {"data", o.data}, {"admin_key_file", dir.AdminKey()}},
         "market initialised in " + o.data + "\nprovider public key: " + b->provider_public_key +
             "\nadmin key (also in " + dir.AdminKey() + ", mode 0600): " + b->admin_key + "\n");
    return 0;
  });
  init->add_option("--currency", p->currency, "currency of the provider's accounts");

  CLI::App* account = market->add_subcommand("account", "accounts");
  account->require_subcommand(1);
  auto* acreate = Leaf(account, "create", "create an account (admin)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto cur = mk::Currency::Parse(o.currency);
    if (!cur.ok()) return Fail(cur.status());
    auto limit = mk::Money::Parse(o.credit_limit, *cur);
    if (!limit.ok()) return Fail(limit.status().WithContext("--credit-limit"));
    auto a = (*m)->CreateAccount(ApiKey(o), Idem(o), {o.name, *cur, limit->micros()});
    if (!a.ok()) return Fail(a.status());
    Emit(o, json{{"account", *a}}, "account " + std::to_string(*a) + "\n");
    return 0;
  });
  acreate->add_option("--name", p->name, "account name")->required();
  acreate->add_option("--currency", p->currency, "currency (default USD)");
  acreate->add_option("--credit-limit", p->credit_limit, "how far below zero the balance may go, decimal, e.g. 5.00")
      ->capture_default_str();
  AddIdem(acreate, p);

  CLI::App* key = market->add_subcommand("key", "API keys");
  key->require_subcommand(1);
  auto* kcreate = Leaf(key, "create", "create an API key for an account (admin); the secret is shown once", o, exit_code,
                       [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto scopes = mk::ParseScopes(o.scopes);
    if (!scopes.ok()) return Fail(scopes.status());
    auto k = (*m)->CreateKey(ApiKey(o), Idem(o), o.account, *scopes);
    if (!k.ok()) return Fail(k.status());
    Emit(o, json{{"key_id", k->key_id}, {"account", k->account}, {"scopes", mk::ScopesToString(k->scopes)}, {"secret", k->secret}},
         "key " + std::to_string(k->key_id) + " for account " + std::to_string(k->account) + " (" +
             mk::ScopesToString(k->scopes) + ")\n" +
             (k->secret.empty() ? "secret: not shown again (idempotent retry)\n" : "secret (shown once): " + k->secret + "\n"));
    return 0;
  });
  kcreate->add_option("--account", p->account, "account id")->required();
  kcreate->add_option("--scopes", p->scopes, "comma list of publish,buy,admin");
  AddIdem(kcreate, p);
  auto* krevoke = Leaf(key, "revoke", "revoke an API key (admin)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    Status s = (*m)->RevokeKey(ApiKey(o), Idem(o), o.key_id);
    if (!s.ok()) return Fail(s);
    Emit(o, json{{"revoked", o.key_id}}, "key " + std::to_string(o.key_id) + " revoked\n");
    return 0;
  });
  krevoke->add_option("--id", p->key_id, "key id (as printed by `market key create`)")->required();
  AddIdem(krevoke, p);

  auto* deposit = Leaf(market, "deposit", "credit an account from outside funds (admin)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto amt = ParseMoney(o.amount, o.currency);
    if (!amt.ok()) return Fail(amt.status());
    auto r = (*m)->Deposit(ApiKey(o), Idem(o), o.account, *amt);
    if (!r.ok()) return Fail(r.status());
    Emit(o, json::parse(*r), "deposited " + amt->ToString() + " into account " + std::to_string(o.account) + "\nreceipt: " + *r + "\n");
    return 0;
  });
  deposit->add_option("--account", p->account, "account id")->required();
  deposit->add_option("--amount", p->amount, "decimal amount, e.g. 12.50")->required();
  deposit->add_option("--currency", p->currency, "currency (default USD)");
  AddIdem(deposit, p);

  CLI::App* price = market->add_subcommand("price", "prices");
  price->require_subcommand(1);
  auto* pset = Leaf(price, "set", "list an artifact and set its prices (publish)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto cur = mk::Currency::Parse(o.currency);
    if (!cur.ok()) return Fail(cur.status());
    mk::PriceSpec spec;
    spec.artifact_id = o.artifact;
    spec.tokens = o.tokens;
    spec.stored_bytes = o.bytes;
    spec.currency = *cur;
    auto micros = [&](const std::string& s, int64_t* out) -> Status {
      if (s.empty()) return Status::Ok();
      KVMART_ASSIGN_OR_RETURN(mk::Money v, mk::Money::Parse(s, *cur));
      *out = v.micros();
      return Status::Ok();
    };
    if (!o.per_load.empty()) {
      int64_t v = 0;
      if (Status s = micros(o.per_load, &v); !s.ok()) return Fail(s);
      spec.per_load_micros = v;
    }
    spec.bundle_loads = o.bundle_loads;
    spec.unlimited_seconds = o.unlimited_seconds;
    if (Status s = micros(o.bundle_price, &spec.bundle_price_micros); !s.ok()) return Fail(s);
    if (Status s = micros(o.unlimited_price, &spec.unlimited_price_micros); !s.ok()) return Fail(s);
    if (!o.visibility.empty()) {
      auto v = mk::ParseVisibility(o.visibility);
      if (!v.ok()) return Fail(v.status());
      spec.visibility = *v;
    }
    auto l = (*m)->SetPrice(ApiKey(o), Idem(o), spec);
    if (!l.ok()) return Fail(l.status());
    Emit(o, json{{"artifact_id", l->spec.artifact_id}, {"publisher", l->publisher}, {"tokens", l->spec.tokens},
                 {"per_load", MoneyJ(l->per_load)}, {"per_load_is_default", l->per_load_is_default},
                 {"bundle_loads", l->spec.bundle_loads}, {"bundle_price_micros", l->spec.bundle_price_micros},
                 {"unlimited_seconds", l->spec.unlimited_seconds}, {"unlimited_price_micros", l->spec.unlimited_price_micros},
                 {"visibility", mk::VisibilityName(l->visibility)}},
         l->spec.artifact_id + ": " + l->per_load.ToString() + " per load" + (l->per_load_is_default ? " (cost-model default)" : "") +
             (l->visibility == mk::Visibility::kPrivate ? ", private" : "") + "\n");
    return 0;
  });
  pset->add_option("--artifact", p->artifact, "artifact id kv1-<64 hex>")->required();
  pset->add_option("--tokens", p->tokens, "tokens in the artifact")->required();
  pset->add_option("--bytes", p->bytes, "stored bytes (billed per GB-hour)");
  pset->add_option("--per-load", p->per_load, "price per metered load (default: cost model)");
  pset->add_option("--bundle-loads", p->bundle_loads, "loads in a bundle");
  pset->add_option("--bundle-price", p->bundle_price, "price of a bundle");
  pset->add_option("--unlimited-seconds", p->unlimited_seconds, "length of an unlimited plan");
  pset->add_option("--unlimited-price", p->unlimited_price, "price of an unlimited plan");
  pset->add_option("--currency", p->currency, "currency (default USD)");
  pset->add_option("--visibility", p->visibility,
                   "public | private (only you and the accounts you grant see it); default: public when new, "
                   "else unchanged");
  AddIdem(pset, p);

  CLI::App* grant = market->add_subcommand("grant", "who may see a private listing (publish)");
  grant->require_subcommand(1);
  // add and remove differ only in the market call and the words.
  auto grant_leaf = [&](const char* name, const char* help, bool granted) {
    return Leaf(grant, name, help, o, exit_code, [granted](const Opts& o) {
      auto m = OpenMarket(o, false);
      if (!m.ok()) return Fail(m.status());
      Status s = granted ? (*m)->GrantAccess(ApiKey(o), Idem(o), o.artifact, o.account)
                         : (*m)->RevokeAccess(ApiKey(o), Idem(o), o.artifact, o.account);
      if (!s.ok()) return Fail(s);
      Emit(o, json{{"artifact_id", o.artifact}, {"account", o.account}, {"granted", granted}},
           "account " + std::to_string(o.account) + (granted ? " may see " : " no longer sees ") + o.artifact + "\n");
      return 0;
    });
  };
  auto* gadd = grant_leaf("add", "let an account see, quote and buy a private listing", true);
  auto* gremove = grant_leaf("remove", "stop an account seeing a private listing (its entitlements still load)", false);
  for (CLI::App* c : {gadd, gremove}) {
    c->add_option("--artifact", p->artifact, "artifact id kv1-<64 hex>")->required();
    c->add_option("--account", p->account, "the grantee's account id")->required();
    AddIdem(c, p);
  }
  auto* glist = Leaf(grant, "list", "the accounts granted a listing", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto g = (*m)->Grantees(ApiKey(o), o.artifact);
    if (!g.ok()) return Fail(g.status());
    std::string text;
    for (mk::AccountId a : *g) text += std::to_string(a) + "\n";
    Emit(o, json{{"artifact_id", o.artifact}, {"accounts", *g}}, text);
    return 0;
  });
  glist->add_option("--artifact", p->artifact, "artifact id kv1-<64 hex>")->required();

  auto purchase_opts = [p](CLI::App* c) {
    c->add_option("--artifact", p->artifact, "artifact id")->required();
    c->add_option("--kind", p->kind, "metered | bundle | unlimited");
    c->add_option("--quantity", p->quantity, "metered: loads allowed; bundle: bundles");
  };
  auto* quote = Leaf(market, "quote", "price a purchase (buy)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto kind = mk::ParsePurchaseKind(o.kind);
    if (!kind.ok()) return Fail(kind.status());
    auto q = (*m)->GetQuote(ApiKey(o), {o.artifact, *kind, o.quantity});
    if (!q.ok()) return Fail(q.status());
    Emit(o, QuoteJ(*q), QuoteText(*q));
    return 0;
  });
  purchase_opts(quote);
  auto* buy = Leaf(market, "buy", "buy an entitlement (buy)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto kind = mk::ParsePurchaseKind(o.kind);
    if (!kind.ok()) return Fail(kind.status());
    auto b = (*m)->Buy(ApiKey(o), Idem(o), {o.artifact, *kind, o.quantity});
    if (!b.ok()) return Fail(b.status());
    Emit(o, json{{"entitlement", b->entitlement}, {"quote", QuoteJ(b->quote)}, {"receipt", json::parse(b->receipt)}},
         "entitlement " + std::to_string(b->entitlement) + ": " + QuoteText(b->quote) + "receipt: " + b->receipt + "\n");
    return 0;
  });
  purchase_opts(buy);
  AddIdem(buy, p);
  auto* load = Leaf(market, "load", "meter one load of an artifact (buy)", o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto l = (*m)->Load(ApiKey(o), Idem(o), o.artifact);
    if (!l.ok()) return Fail(l.status());
    Emit(o, json{{"load", l->load}, {"entitlement", l->entitlement}, {"tokens_reused", l->tokens_reused},
                 {"charged", MoneyJ(l->charged)}, {"receipt", json::parse(l->receipt)}},
         "load " + std::to_string(l->load) + ": " + std::to_string(l->tokens_reused) + " tokens reused, charged " +
             l->charged.ToString() + "\nreceipt: " + l->receipt + "\n");
    return 0;
  });
  load->add_option("--artifact", p->artifact, "artifact id")->required();
  AddIdem(load, p);

  auto own_account = [](mk::Market& m, const Opts& o) -> StatusOr<mk::AccountId> {
    if (o.account != 0) return o.account;
    KVMART_ASSIGN_OR_RETURN(auto who, m.Authenticate(ApiKey(o)));
    return who.first;
  };
  auto* balance = Leaf(market, "balance", "an account's balance (own, or any for admin)", o, exit_code, [own_account](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto id = own_account(**m, o);
    if (!id.ok()) return Fail(id.status());
    auto a = (*m)->GetAccount(ApiKey(o), *id);
    if (!a.ok()) return Fail(a.status());
    Emit(o, json{{"account", a->id}, {"name", a->name}, {"balance", MoneyJ(a->balance)}, {"credit_limit", MoneyJ(a->credit_limit)}},
         "account " + std::to_string(a->id) + " (" + a->name + "): " + a->balance.ToString() + "\n");
    return 0;
  });
  balance->add_option("--account", p->account, "account id (default: the key's own)");
  auto* statement = Leaf(market, "statement", "ledger lines of an account, earnings per artifact", o, exit_code,
                         [own_account](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto id = own_account(**m, o);
    if (!id.ok()) return Fail(id.status());
    auto lines = (*m)->Statement(ApiKey(o), *id, o.from, o.to);
    if (!lines.ok()) return Fail(lines.status());
    auto earn = (*m)->PublisherEarnings(ApiKey(o), *id);
    if (!earn.ok()) return Fail(earn.status());
    json j{{"account", *id}, {"lines", json::array()}, {"earnings", json::array()}};
    std::ostringstream t;
    for (const auto& l : *lines) {
      j["lines"].push_back({{"txn", l.txn}, {"time", l.time}, {"kind", l.kind}, {"artifact_id", l.artifact_id}, {"amount", MoneyJ(l.amount)}});
      t << l.time << "  txn " << l.txn << "  " << l.kind << "  " << (l.artifact_id.empty() ? "-" : l.artifact_id) << "  "
        << l.amount.ToString() << "\n";
    }
    for (const auto& e : *earn) {
      j["earnings"].push_back({{"artifact_id", e.artifact_id}, {"earned", MoneyJ(e.earned)}, {"loads", e.loads}});
      t << "earned " << e.earned.ToString() << " from " << e.artifact_id << " (" << e.loads << " metered loads)\n";
    }
    Emit(o, j, t.str());
    return 0;
  });
  statement->add_option("--account", p->account, "account id (default: the key's own)");
  statement->add_option("--from", p->from, "unix seconds, inclusive");
  statement->add_option("--to", p->to, "unix seconds, exclusive");

  auto* earnings = Leaf(market, "earnings", "what an account may be paid out now (own, or any for admin)", o, exit_code,
                        [own_account](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto id = own_account(**m, o);
    if (!id.ok()) return Fail(id.status());
    auto e = (*m)->GetEarnings(ApiKey(o), *id);
    if (!e.ok()) return Fail(e.status());
    Emit(o, json{{"account", *id}, {"balance", MoneyJ(e->balance)}, {"reserved", MoneyJ(e->pending)}, {"held", MoneyJ(e->held)},
                 {"available", MoneyJ(e->available)}, {"min_payout", MoneyJ(e->min_payout)}, {"hold_seconds", e->hold_seconds}},
         "account " + std::to_string(*id) + ": balance " + e->balance.ToString() + ", held " + e->held.ToString() +
             " (earned in the last " + std::to_string(e->hold_seconds) + " s), available " + e->available.ToString() +
             " (minimum payout " + e->min_payout.ToString() + ")\n");
    return 0;
  });
  earnings->add_option("--account", p->account, "account id (default: the key's own)");

  auto* payout = Leaf(market, "payout", "pay an account's available earnings out to its external account (publish own, admin any)",
                      o, exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    auto amt = ParseMoney(o.amount, o.currency);
    if (!amt.ok()) return Fail(amt.status());
    auto r = (*m)->Payout(ApiKey(o), Idem(o), {o.account, *amt, o.destination});
    if (!r.ok()) return Fail(r.status());
    Emit(o, json{{"payout", r->payout}, {"account", r->account}, {"amount", MoneyJ(r->amount)}, {"destination", r->destination},
                 {"receipt", json::parse(r->receipt)}},
         "paid out " + r->amount.ToString() + " from account " + std::to_string(r->account) + " to " + r->destination +
             "\nreceipt: " + r->receipt + "\n");
    return 0;
  });
  payout->add_option("--account", p->account, "account id (default: the key's own)");
  payout->add_option("--amount", p->amount, "decimal amount, e.g. 25.00")->required();
  payout->add_option("--destination", p->destination, "the external payout account (reference)")->required();
  payout->add_option("--currency", p->currency, "currency (default USD)");
  AddIdem(payout, p);

  // Provider maintenance: needs the market files, not a key (the server runs
  // the same step on its own every --market-maintenance-interval).
  auto* bill = Leaf(market, "bill-storage", "bill storage for one period (default: the last completed one); idempotent", o,
                    exit_code, [](const Opts& o) {
    auto m = OpenMarket(o, false);
    if (!m.ok()) return Fail(m.status());
    if (o.period <= 0) return Fail(Status::InvalidArgument("--period must be > 0 seconds"));
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    const int64_t start = o.period_start >= 0 ? o.period_start : (now / o.period - 1) * o.period;
    auto voided = (*m)->VoidExpiredLoads();
    if (!voided.ok()) return Fail(voided.status());
    auto r = (*m)->BillStorage(start, o.period);
    if (!r.ok()) return Fail(r.status());
    json receipts = json::array();
    for (const auto& rc : r->receipts) receipts.push_back(json::parse(rc));
    Emit(o, json{{"period_start", r->period_start}, {"period_seconds", r->period_seconds}, {"billed", r->billed},
                 {"already_billed", r->already_billed}, {"unpaid", r->unpaid}, {"unlisted", r->unlisted},
                 {"relisted", r->relisted}, {"voided_expired_loads", *voided}, {"receipts", receipts}},
         "period " + std::to_string(r->period_start) + " +" + std::to_string(r->period_seconds) + " s: billed " +
             std::to_string(r->billed) + ", already billed " + std::to_string(r->already_billed) + ", unpaid " +
             std::to_string(r->unpaid) + ", unlisted " + std::to_string(r->unlisted) + ", relisted " +
             std::to_string(r->relisted) + "\n");
    return 0;
  });
  bill->add_option("--period", p->period, "billing period in seconds (default 3600)");
  bill->add_option("--period-start", p->period_start, "unix seconds where the period starts");

  auto* audit = Leaf(market, "audit", "independently replay and check the whole ledger; non-zero exit names the first violation",
                     o, exit_code, [](const Opts& o) {
    std::string pk = o.public_key;
    if (pk.empty()) {
      auto k = LoadOrCreateProviderKey(DataDir{o.data}, false);
      if (!k.ok()) return Fail(Status::InvalidArgument("give --public-key, or --data with provider.key"));
      pk = k->PublicKeyHex();
    }
    const std::string db = DataDir{o.data}.MarketLocation(o.db);
    std::error_code ec;
    if (!postgres::IsPostgresUrl(db) && !std::filesystem::exists(db, ec)) {
      return Fail(Status::NotFound(db + " does not exist"));
    }
    auto r = mk::AuditMarketDatabase(db, pk);
    if (!r.ok()) return Fail(r.status());
    json j{{"ok", r->ok()}, {"accounts", r->accounts}, {"transactions", r->transactions}, {"entries", r->entries},
           {"loads", r->loads}, {"receipts", r->receipts}};
    if (!r->ok()) j["violation"] = r->violation;
    const std::string counts = std::to_string(r->transactions) + " transactions, " + std::to_string(r->entries) +
                               " entries, " + std::to_string(r->accounts) + " accounts, " + std::to_string(r->loads) +
                               " loads, " + std::to_string(r->receipts) + " receipts";
    if (!r->ok()) {
      if (o.json_out) std::cout << j.dump(2) << "\n";
      std::cerr << "audit FAILED: " << r->violation << " (" << counts << ")\n";
      return 2;
    }
    Emit(o, j, "audit ok: " + counts + "\n");
    return 0;
  });
  audit->add_option("--public-key", p->public_key, "provider public key (hex); default from --data/provider.key");

  // Schema migrations, run once per deployment before the nodes start (a node
  // started with an older schema migrates it itself unless told not to; one
  // with a newer schema than its build refuses to start).
  CLI::App* admin = app.add_subcommand("admin", "operations on a deployment's shared databases");
  admin->require_subcommand(1);
  auto* migrate = Leaf(admin, "migrate", "bring the market database's schema up to this build's version", o, exit_code,
                       [](const Opts& o) {
    const std::string db = DataDir{o.data}.MarketLocation(o.db);
    auto r = mk::SqlMarket::MigrateSchema(db, /*apply=*/!o.check);
    if (!r.ok()) return Fail(r.status());
    json j{{"from", r->from}, {"to", r->to}, {"target", r->target}, {"applied", !o.check}};
    std::string text;
    if (o.check) {
      text = r->from == r->target ? "schema is current (version " + std::to_string(r->from) + ")\n"
                                  : "schema is version " + std::to_string(r->from) + ", this build writes " +
                                        std::to_string(r->target) + "; run without --check to migrate\n";
    } else {
      text = r->from == r->to ? "schema already at version " + std::to_string(r->to) + "\n"
                              : "migrated schema " + std::to_string(r->from) + " -> " + std::to_string(r->to) + "\n";
    }
    Emit(o, j, text);
    return o.check && r->from != r->target ? 3 : 0;
  });
  migrate->add_flag("--check", p->check, "only report the version; exit 3 when a migration is due");

  CLI::App* receipt = market->add_subcommand("receipt", "receipts");
  receipt->require_subcommand(1);
  auto* verify = Leaf(receipt, "verify", "verify a signed receipt offline with the provider's public key", o, exit_code,
                      [](const Opts& o) {
    std::string pk = o.public_key;
    if (pk.empty()) {
      auto k = LoadOrCreateProviderKey(DataDir{o.data}, false);
      if (!k.ok()) return Fail(Status::InvalidArgument("give --public-key, or --data with provider.key"));
      pk = k->PublicKeyHex();
    }
    std::stringstream buf;
    if (o.file == "-") {
      buf << std::cin.rdbuf();
    } else {
      std::ifstream in(o.file);
      if (!in) return Fail(Status::IOError("cannot read " + o.file));
      buf << in.rdbuf();
    }
    std::string text = buf.str();
    // Accept a bare receipt or a command's JSON output holding one.
    json j = json::parse(text, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("receipt") && j["receipt"].is_object()) text = j["receipt"].dump();
    auto r = mk::VerifyReceipt(text, pk);
    if (!r.ok()) return Fail(r.status());
    Emit(o, json{{"valid", true}, {"receipt", r->ToJson()}},
         "valid: " + r->kind + " " + r->receipt_id + ", account " + std::to_string(r->account) + ", " +
             std::to_string(r->price_micros) + " micro-" + r->currency + "\n");
    return 0;
  });
  verify->add_option("--file", p->file, "receipt JSON file, '-' for stdin");
  verify->add_option("--public-key", p->public_key, "provider public key (hex); default from --data");
}

}  // namespace kvmart::cli
