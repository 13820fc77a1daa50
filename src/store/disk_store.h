// The disk Store (store.h): catalog + disk tier + memory tier, for one process
// per data directory (an advisory lock on <data_dir>/LOCK keeps a second
// process out, which is what makes Open's cleanup of leftovers safe). The
// catalog is a SQLite file by default (the embedded store) or a PostgreSQL
// database that many nodes share, optionally with a shared block tier below
// the disk (StoreOptions::catalog, shared_blocks; docs/STORE.md, "Many nodes").
//
// Concurrency design:
//  - Reads (Lookup, Stat, List, GetManifest, the block lists of Load) are served
//    from an in-memory index of the catalog under a shared_mutex held only for
//    hash probes and copies of small records; block I/O happens with no store
//    lock held, and the memory tier has per-shard locks.
//  - Writes (Put, Remove, Pin, SetTtl, quotas, Gc) are serialised by one writer
//    mutex: durable work (files, catalog commit) first, then a brief exclusive
//    index update. A reader sees an artifact only after its commit.
#pragma once

#include <memory>

#include "store/store.h"

namespace kvmart::store {

StatusOr<std::unique_ptr<Store>> OpenDiskStore(const StoreOptions& options);

}  // namespace kvmart::store
