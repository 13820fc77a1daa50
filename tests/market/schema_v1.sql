-- The market schema as shipped at version 1 (a fixture for the v1 -> v2 migration test).
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE accounts(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  currency TEXT NOT NULL,
  credit_limit INTEGER NOT NULL DEFAULT 0 CHECK(credit_limit >= 0),
  balance INTEGER NOT NULL DEFAULT 0,
  system TEXT,                      -- NULL, 'provider' or 'external'
  created_at INTEGER NOT NULL,
  CHECK(balance >= -credit_limit),
  UNIQUE(system, currency));
CREATE TABLE api_keys(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  key_hash BLOB NOT NULL UNIQUE,
  scopes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER);
CREATE TABLE listings(
  artifact_id TEXT PRIMARY KEY,
  publisher INTEGER NOT NULL REFERENCES accounts(id),
  tokens INTEGER NOT NULL CHECK(tokens >= 0),
  stored_bytes INTEGER NOT NULL CHECK(stored_bytes >= 0),
  currency TEXT NOT NULL,
  per_load INTEGER CHECK(per_load IS NULL OR per_load >= 0),
  bundle_loads INTEGER NOT NULL CHECK(bundle_loads >= 0),
  bundle_price INTEGER NOT NULL CHECK(bundle_price >= 0),
  unlimited_seconds INTEGER NOT NULL CHECK(unlimited_seconds >= 0),
  unlimited_price INTEGER NOT NULL CHECK(unlimited_price >= 0),
  updated_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE txns(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,               -- deposit purchase load refund storage
  artifact_id TEXT NOT NULL DEFAULT '',
  ref_txn INTEGER,                  -- the charge a refund compensates
  created_at INTEGER NOT NULL);
CREATE TABLE entries(
  id INTEGER PRIMARY KEY,
  txn_id INTEGER NOT NULL REFERENCES txns(id),
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  currency TEXT NOT NULL,
  amount INTEGER NOT NULL,
  role TEXT NOT NULL);              -- buyer publisher fee storage external
CREATE INDEX entries_by_account ON entries(account_id, txn_id);
CREATE INDEX entries_by_txn ON entries(txn_id);
CREATE TABLE entitlements(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  artifact_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  loads_remaining INTEGER CHECK(loads_remaining IS NULL OR loads_remaining >= 0),
  expires_at INTEGER NOT NULL,      -- 0 = never
  per_load INTEGER NOT NULL,        -- metered price agreed at purchase
  purchase_txn INTEGER,
  created_at INTEGER NOT NULL);
CREATE INDEX entitlements_lookup ON entitlements(account_id, artifact_id);
CREATE TABLE loads(
  id INTEGER PRIMARY KEY,
  entitlement_id INTEGER NOT NULL REFERENCES entitlements(id),
  account_id INTEGER NOT NULL,
  artifact_id TEXT NOT NULL,
  tokens INTEGER NOT NULL,
  charged INTEGER NOT NULL,
  charge_txn INTEGER,               -- NULL for prepaid entitlements
  refunded INTEGER NOT NULL DEFAULT 0,
  refund_txn INTEGER,
  created_at INTEGER NOT NULL);
CREATE INDEX loads_by_charge ON loads(charge_txn);
CREATE TABLE idempotency(
  account_id INTEGER NOT NULL,
  idem_key TEXT NOT NULL,
  op TEXT NOT NULL,
  request_hash BLOB NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(account_id, idem_key)) WITHOUT ROWID;
