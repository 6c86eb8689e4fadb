//! Accounts and sessions: the identity data the hosts need, kept beside the rooms.
//!
//! These writes are rare and small, so they go straight to the file on their own connection
//! rather than through the message writer (SQLite serialises the two; the busy timeout covers it).

use roomcast_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Store, StoreError};

/// An account as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// Who it is (see core's `UserId`).
    pub id: String,
    /// Its name as its holder typed it.
    pub name: String,
    /// The name as people read it (identity's comparison key); `None` until identity fills it.
    pub key: Option<String>,
}

/// A guest's hold on a name, as the store keeps it (kept after it ends, until reclaimed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGuest {
    /// Who the guest is.
    pub id: String,
    /// The name held, as people read it; `None` until identity fills it.
    pub key: Option<String>,
    /// When the hold ends.
    pub held_until: Timestamp,
}

impl Store {
    /// Stores a new account unless an account already holds a name with this `key`; false if
    /// one does.
    pub fn create_account(
        &self,
        account: &StoredAccount,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            let tx = conn.unchecked_transaction()?;
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM accounts WHERE key = ?1 OR name = ?2",
                    params![account.key, account.name],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO accounts (name, id, key, password_hash, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    account.name,
                    account.id,
                    account.key,
                    password_hash,
                    now.as_unix_millis()
                ],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Replaces the password of the account `id`; false if there is no such account.
    pub fn set_password(&self, id: &str, password_hash: &str) -> Result<bool, StoreError> {
        self.write(|conn| {
            let changed = conn.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                params![id, password_hash],
            )?;
            Ok(changed == 1)
        })
    }

    /// The account holding the name with this key: its id and password hash.
    pub fn account_by_key(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.read(|conn| {
            conn.query_row(
                "SELECT id, password_hash FROM accounts WHERE key = ?1 ORDER BY created_at LIMIT 1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?)
    }

    /// When the account `id` was made.
    pub fn account_created_at(&self, id: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.read(|conn| {
            conn.query_row("SELECT created_at FROM accounts WHERE id = ?1", [id], |r| {
                Ok(Timestamp::from_unix_millis(r.get(0)?))
            })
            .optional()
        })?)
    }

    /// Every account, oldest first.
    pub fn accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        Ok(self.read(|conn| {
            conn.prepare("SELECT id, name, key FROM accounts ORDER BY created_at, name")?
                .query_map([], |r| {
                    Ok(StoredAccount {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        key: r.get(2)?,
                    })
                })?
                .collect()
        })?)
    }

    /// Fills in the comparison key of the account `id` and of the guest `id` (rows kept from
    /// before keys existed).
    pub fn set_key(&self, id: &str, key: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "UPDATE accounts SET key = ?2 WHERE id = ?1",
                params![id, key],
            )?;
            conn.execute("UPDATE guests SET key = ?2 WHERE id = ?1", params![id, key])?;
            Ok(())
        })
    }

    /// Records a session of user `user` (an id) until `expires_at`.
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

    /// Holds a name (by key) for the guest `guest.id` until `guest.held_until` (replacing an
    /// earlier hold of theirs).
    pub fn hold_guest(&self, guest: &StoredGuest) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO guests (id, key, held_until) VALUES (?1, ?2, ?3)",
                params![guest.id, guest.key, guest.held_until.as_unix_millis()],
            )?;
            Ok(())
        })
    }

    /// Every guest kept: those holding a name, and those whose hold ended but whose leftovers
    /// are not reclaimed yet.
    pub fn guests(&self) -> Result<Vec<StoredGuest>, StoreError> {
        Ok(self.read(|conn| {
            conn.prepare("SELECT id, key, held_until FROM guests")?
                .query_map([], |r| {
                    Ok(StoredGuest {
                        id: r.get(0)?,
                        key: r.get(1)?,
                        held_until: Timestamp::from_unix_millis(r.get(2)?),
                    })
                })?
                .collect()
        })?)
    }

    /// Keeps users of minted tokens seen, `(key, id)`, each name's first.
    pub fn keep_minted(&self, seen: &[(String, String)]) -> Result<(), StoreError> {
        self.write(|conn| {
            let tx = conn.unchecked_transaction()?;
            {
                let mut keep =
                    tx.prepare("INSERT OR IGNORE INTO minted_users (key, id) VALUES (?1, ?2)")?;
                for (key, id) in seen {
                    keep.execute(params![key, id])?;
                }
            }
            tx.commit()
        })
    }

    /// Every minted token's user kept, `(key, id)`.
    pub fn minted(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.read(|conn| {
            conn.prepare("SELECT key, id FROM minted_users")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?)
    }

    /// Forgets guests whose leftovers were reclaimed.
    pub fn remove_guests(&self, ids: &[String]) -> Result<(), StoreError> {
        self.write(|conn| {
            let tx = conn.unchecked_transaction()?;
            {
                let mut delete = tx.prepare("DELETE FROM guests WHERE id = ?1")?;
                for id in ids {
                    delete.execute([id])?;
                }
            }
            tx.commit()
        })
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
