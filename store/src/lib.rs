//! Durable roomcast history in an embedded SQLite database (WAL mode, `synchronous = FULL`).
//!
//! The store keeps what core decided and nothing else: rooms, their messages and the message id
//! counter. It never decides a chat rule; the host hands it core's durable
//! [`Event`](roomcast_core::Event)s.
//!
//! - [`Store::open`] takes the data dir: creates it, locks it against a second server, checks
//!   the file is a roomcast database, and migrates the schema.
//! - [`Store::load`] rebuilds what core needs after a restart: each room, its last sequence
//!   number and its newest messages (with their idempotency keys).
//! - [`Store::journal`] starts the one writer thread. It commits many batches in one transaction
//!   (group commit) and reports how many batches are durable, so the host acknowledges and
//!   delivers only what a crash cannot take back. Retention runs on the same thread between
//!   commits, in small chunks.
//! - Accounts and sessions ([`Store::create_account`], [`Store::add_session`], ...) for the
//!   hosts' sign-in, written directly on their own connection.
//! - [`Store::after`], [`Store::before`] and [`Store::first_seq`] read history older than core's
//!   ring; they are blocking calls for a host's blocking pool, on a small pool of read-only
//!   connections (WAL lets them run beside the writer).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod accounts;
mod journal;
mod open;
mod read;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use accounts::{StoredAccount, StoredGuest};
pub use journal::{Clock, Journal, Progress, Retention, Stopped};
pub use open::OpenError;
pub use read::Loaded;
pub use schema::migrate_to;

/// The database file's name inside the data dir.
pub const DATABASE_FILE: &str = "roomcast.db";
/// The lock file's name inside the data dir: held by the running server.
pub const LOCK_FILE: &str = "roomcast.lock";

/// A failure reading or writing the database after it opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// An open data dir. Holds the lock for as long as it lives.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    readers: Mutex<Vec<rusqlite::Connection>>,
    /// The connection for account and session writes, opened on first use.
    accounts: Mutex<Option<rusqlite::Connection>>,
    _lock: Arc<std::fs::File>,
}

impl Store {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
