//! Accounts and sessions: the identity data the hosts need, kept beside the rooms.
//!
//! These writes are rare and small, so they go straight to the file on their own connection
//! rather than through the message writer (SQLite serialises the two; the busy timeout covers it).

use roomcast_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Store, StoreError};

impl Store {
    /// Stores a new account; false if the name is taken.
    pub fn create_account(
        &self,
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            let added = conn.execute(
                "INSERT OR IGNORE INTO accounts (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, password_hash, now.as_unix_millis()],
            )?;
            Ok(added == 1)
        })
    }

    /// The stored password hash of an account.
    pub fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.read(|conn| {
            conn.query_row(
                "SELECT password_hash FROM accounts WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
        })?)
    }

    /// Every account name.
    pub fn account_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.read(|conn| {
            conn.prepare("SELECT name FROM accounts")?
                .query_map([], |r| r.get(0))?
                .collect()
        })?)
    }

    /// Records a session until `expires_at`.
    pub fn add_session(
        &self,
        id: &str,
        user: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO sessions (id, user, expires_at) VALUES (?1, ?2, ?3)",
                params![id, user, expires_at.as_unix_millis()],
            )?;
            Ok(())
        })
    }

    /// Forgets a session: tokens that name it stop working.
    pub fn remove_session(&self, id: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// The sessions still valid at `now`, as `(id, user, expires_at)`; expired ones are
    /// deleted.
    pub fn live_sessions(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        self.prune_sessions(now)?;
        Ok(self.read(|conn| {
            conn.prepare("SELECT id, user, expires_at FROM sessions")?
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, Timestamp::from_unix_millis(r.get(2)?)))
                })?
                .collect()
        })?)
    }

    /// Deletes the sessions expired at `now`.
    pub fn prune_sessions(&self, now: Timestamp) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                [now.as_unix_millis()],
            )?;
            Ok(())
        })
    }

    /// Holds a guest nickname until `until` (replacing any earlier hold).
    pub fn hold_guest_name(&self, name: &str, until: Timestamp) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO guest_names (name, held_until) VALUES (?1, ?2)",
                params![name, until.as_unix_millis()],
            )?;
            Ok(())
        })
    }

    /// The guest nicknames still held at `now`, with when each is released; released ones
    /// are deleted.
    pub fn guest_names(&self, now: Timestamp) -> Result<Vec<(String, Timestamp)>, StoreError> {
        self.write(|conn| {
            conn.execute(
                "DELETE FROM guest_names WHERE held_until <= ?1",
                [now.as_unix_millis()],
            )?;
            Ok(())
        })?;
        Ok(self.read(|conn| {
            conn.prepare("SELECT name, held_until FROM guest_names")?
                .query_map([], |r| {
                    Ok((r.get(0)?, Timestamp::from_unix_millis(r.get(1)?)))
                })?
                .collect()
        })?)
    }

    /// The data dir, for files that live beside the database (the token secret).
    pub fn dir(&self) -> &std::path::Path {
        self.path.parent().unwrap_or(std::path::Path::new("."))
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut slot = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match slot.take() {
            Some(conn) => conn,
            None => self.write_connection()?,
        };
        let result = f(&conn);
        *slot = Some(conn);
        Ok(result?)
    }
}
