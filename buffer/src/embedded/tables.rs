//! The redb tables of the embedded store and the storage failure type.
//!
//! Message rows (`message_meta`, `message_body`) are keyed by queue prefix and sequence; the
//! index tables hold one empty-valued row per indexed message, keyed by queue prefix, a time
//! where the index is ordered by one, and sequence. So every question the store asks ("first
//! ready message", "leases that ran out", "expired waiting messages", "oldest waiting message")
//! is a short range read on disk, and nothing about a queued message is kept in memory
//! ([`super::index`]).

use redb::{Table, TableDefinition, WriteTransaction};

pub(crate) const META: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("message_meta");
pub(crate) const BODY: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("message_body");
const DEAD: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("dead_letters");
const COUNTERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("counters");
const SIZES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("queue_sizes");
const CHANNELS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("channels");
const SEQUENCES: TableDefinition<'_, &str, u64> = TableDefinition::new("sequences");
const MISC: TableDefinition<'_, &str, u64> = TableDefinition::new("misc");
/// Ready now: queue prefix + seq.
const READY: TableDefinition<'_, &[u8], ()> = TableDefinition::new("index_ready");
/// Waiting for a later time: queue prefix + ready time + seq.
const DELAYED: TableDefinition<'_, &[u8], ()> = TableDefinition::new("index_delayed");
/// Leased: queue prefix + lease end + seq.
const LEASED: TableDefinition<'_, &[u8], ()> = TableDefinition::new("index_leased");
/// Not leased, by arrival: queue prefix + received time + seq.
const WAITING: TableDefinition<'_, &[u8], ()> = TableDefinition::new("index_waiting");
/// Not leased and with an expiry: queue prefix + expiry + seq.
const EXPIRING: TableDefinition<'_, &[u8], ()> = TableDefinition::new("index_expiring");

pub(crate) const MISC_LEASE_GEN: &str = "lease_generation";
pub(crate) const MISC_NEXT_DEAD: &str = "next_dead_letter_id";
pub(crate) const MISC_HEALTH: &str = "health_check";
/// Version of the index tables; absent in files written before they existed, which are then
/// indexed once at start-up.
pub(crate) const MISC_INDEX_FORMAT: &str = "index_format";
pub(crate) const INDEX_FORMAT: u64 = 1;

/// A storage failure: the batch is aborted and its callers get `Unavailable`.
#[derive(Debug)]
pub(crate) struct Fail(pub String);

macro_rules! fail_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail(e.to_string())
            }
        }
    )*};
}
fail_from!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::Error
);

pub(crate) type SResult<T> = Result<T, Fail>;

pub(crate) type BytesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;
pub(crate) type IndexTable<'txn> = Table<'txn, &'static [u8], ()>;

/// The tables of one write transaction.
pub(crate) struct Tables<'txn> {
    pub meta: BytesTable<'txn>,
    pub body: BytesTable<'txn>,
    pub dead: BytesTable<'txn>,
    pub counters: BytesTable<'txn>,
    pub sizes: BytesTable<'txn>,
    pub channels: Table<'txn, &'static str, &'static [u8]>,
    pub seqs: Table<'txn, &'static str, u64>,
    pub misc: Table<'txn, &'static str, u64>,
    pub ready: IndexTable<'txn>,
    pub delayed: IndexTable<'txn>,
    pub leased: IndexTable<'txn>,
    pub waiting: IndexTable<'txn>,
    pub expiring: IndexTable<'txn>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> SResult<Self> {
        Ok(Tables {
            meta: txn.open_table(META)?,
            body: txn.open_table(BODY)?,
            dead: txn.open_table(DEAD)?,
            counters: txn.open_table(COUNTERS)?,
            sizes: txn.open_table(SIZES)?,
            channels: txn.open_table(CHANNELS)?,
            seqs: txn.open_table(SEQUENCES)?,
            misc: txn.open_table(MISC)?,
            ready: txn.open_table(READY)?,
            delayed: txn.open_table(DELAYED)?,
            leased: txn.open_table(LEASED)?,
            waiting: txn.open_table(WAITING)?,
            expiring: txn.open_table(EXPIRING)?,
        })
    }
}
