//! Counters like `conntrack -S`: per-shard ones kept under the shard lock, a few global ones.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters bumped before a packet reaches a shard.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Invalid,
    Error,
}

/// Global counters (packets refused before a table lookup).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    invalid: AtomicU64,
    error: AtomicU64,
}

impl Stats {
    #[inline]
    pub(crate) fn bump(&self, c: Counter) {
        match c {
            Counter::Invalid => &self.invalid,
            Counter::Error => &self.error,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            invalid: self.invalid.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
            ..Snapshot::default()
        }
    }
}

/// Counters kept by one shard.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShardStats {
    pub found: u64,
    pub invalid: u64,
    pub ignore: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub search_restart: u64,
    pub expect_new: u64,
    pub expect_create: u64,
    pub expect_delete: u64,
}

/// A copy of every counter, summed over shards.
///
/// `found`: lookups that found an entry; `invalid`: packets left without an entry;
/// `ignore`: packets a tracker accepted without changing anything; `insert`: entries
/// confirmed; `insert_failed`: confirmations that lost a race (ctrack confirms under the
/// shard lock, so this stays 0); `drop`: packets dropped because the table was full;
/// `early_drop`: entries evicted to make room; `error`: ICMP errors that matched nothing or
/// were malformed; `search_restart`: lookups repeated because a tracker destroyed the entry
/// (a TCP connection reopened); `expect_*`: expectations matched, created, deleted; `count`:
/// entries in the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Lookups that found an entry.
    pub found: u64,
    /// Packets left without an entry.
    pub invalid: u64,
    /// Packets accepted without changing their entry.
    pub ignore: u64,
    /// Entries confirmed.
    pub insert: u64,
    /// Confirmations that failed.
    pub insert_failed: u64,
    /// Packets dropped because the table was full.
    pub drop: u64,
    /// Entries evicted by early drop.
    pub early_drop: u64,
    /// ICMP error and malformed ICMP packets.
    pub error: u64,
    /// Lookups repeated after a tracker destroyed the entry.
    pub search_restart: u64,
    /// New connections that matched an expectation.
    pub expect_new: u64,
    /// Expectations created.
    pub expect_create: u64,
    /// Expectations deleted.
    pub expect_delete: u64,
    /// Entries in the table.
    pub count: u64,
}

impl Snapshot {
    pub(crate) fn add(&mut self, s: &ShardStats) {
        self.found += s.found;
        self.invalid += s.invalid;
        self.ignore += s.ignore;
        self.insert += s.insert;
        self.insert_failed += s.insert_failed;
        self.drop += s.drop;
        self.early_drop += s.early_drop;
        self.search_restart += s.search_restart;
        self.expect_new += s.expect_new;
        self.expect_create += s.expect_create;
        self.expect_delete += s.expect_delete;
    }
}

impl fmt::Display for Snapshot {
    /// One line in the order and spelling of `conntrack -S`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "found={} invalid={} ignore={} insert={} insert_failed={} drop={} early_drop={} \
             error={} search_restart={} expect_new={} expect_create={} expect_delete={} count={}",
            self.found,
            self.invalid,
            self.ignore,
            self.insert,
            self.insert_failed,
            self.drop,
            self.early_drop,
            self.error,
            self.search_restart,
            self.expect_new,
            self.expect_create,
            self.expect_delete,
            self.count
        )
    }
}
