//! Opening a data dir: create it, lock it, check the file, migrate.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use rusqlite_migration::{Error as MigrationError, MigrationDefinitionError};

use crate::schema::{self, APPLICATION_ID};
use crate::{DATABASE_FILE, LOCK_FILE, Store};

/// Why a data dir cannot be used. Each message is one line that says what is wrong and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The dir cannot be created or written.
    #[error(
        "the data dir {dir} is not usable ({source}); choose a writable --data-dir, or run with --in-memory"
    )]
    Unwritable {
        /// The data dir.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another running server holds the data dir.
    #[error(
        "the data dir {dir} is in use by another running roomcast{holder}; stop it, or choose another --data-dir"
    )]
    Locked {
        /// The data dir.
        dir: PathBuf,
        /// ` (pid N)` if the holder wrote its pid.
        holder: String,
    },
    /// The file is not a roomcast database.
    #[error(
        "{path} is not a roomcast database ({why}); move it away, or choose another --data-dir"
    )]
    NotRoomcast {
        /// The database file.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// The file was written by a newer roomcast.
    #[error(
        "{path} has schema version {found}, newer than this roomcast knows ({known}); run the newer roomcast, or choose another --data-dir"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: usize,
        /// The newest this binary knows.
        known: usize,
    },
    /// SQLite failed in another way.
    #[error("cannot open {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Store {
    /// Opens (creating if needed) the data dir `dir` and the database in it.
    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "rusqlite_migration's errors are non_exhaustive"
    )]
    pub fn open(dir: &Path) -> Result<Store, OpenError> {
        let unwritable = |source| OpenError::Unwritable {
            dir: dir.to_owned(),
            source,
        };
        make_private_dir(dir).map_err(unwritable)?;
        let lock = lock(dir)?;
        let path = dir.join(DATABASE_FILE);
        // SQLite gives its -wal and -shm files the database file's mode: make that 0600 first.
        make_private_file(&path).map_err(unwritable)?;
        let sqlite = |source: rusqlite::Error| OpenError::Sqlite {
            path: path.clone(),
            source: source.into(),
        };
        let mut conn = Connection::open(&path).map_err(|e| match sqlite_code(&e) {
            Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                unwritable(std::io::Error::other(e.to_string()))
            }
            _ => sqlite(e),
        })?;
        check_owner(&conn, &path)?;
        configure(&conn).map_err(sqlite)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Sqlite {
                path,
                source: format!("the file system does not support WAL mode (got {mode})").into(),
            });
        }
        schema::migrations()
            .to_latest(&mut conn)
            .map_err(|e| match e {
                MigrationError::MigrationDefinition(
                    MigrationDefinitionError::DatabaseTooFarAhead,
                ) => OpenError::TooNew {
                    path: path.clone(),
                    found: conn
                        .query_row("PRAGMA user_version", [], |r| r.get(0))
                        .unwrap_or(0),
                    known: schema::latest_version(),
                },
                MigrationError::RusqliteError { err, .. } => sqlite(err),
                other => OpenError::Sqlite {
                    path: path.clone(),
                    source: other.into(),
                },
            })?;
        Ok(Store {
            path,
            readers: Mutex::new(Vec::new()),
            accounts: Mutex::new(None),
            _lock: Arc::new(lock),
        })
    }

    /// A connection for the writer thread.
    pub(crate) fn write_connection(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        configure(&conn)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn
            }
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }
}

/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 4;
/// How long a statement waits for a lock held by another connection of ours (checkpoints).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Owner-only permissions: the database holds password hashes and direct messages.
const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;

/// Creates the data dir readable by its owner only. An existing one that is roomcast's (empty,
/// or holding its database) is closed up if an older roomcast left it open; another dir is only
/// warned about, never changed.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let ours = dir.join(DATABASE_FILE).exists() || std::fs::read_dir(dir)?.next().is_none();
    if ours {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))?;
        tracing::info!(dir = %dir.display(), from = format!("{mode:o}"), "the data dir is now readable by its owner only (0700)");
    } else {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data dir is readable by others; roomcast.db holds password hashes and direct messages");
    }
    Ok(())
}

/// Creates `path` with mode 0600 if missing, or narrows an existing file (and its SQLite
/// companions) to it.
fn make_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    for file in [path.to_path_buf(), with_suffix("-wal"), with_suffix("-shm")] {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(PRIVATE_FILE))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Takes the data dir's lock file, which the OS releases when the process ends in any way.
fn lock(dir: &Path) -> Result<File, OpenError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .open(dir.join(LOCK_FILE))
        .map_err(|source| OpenError::Unwritable {
            dir: dir.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(OpenError::Locked {
                dir: dir.to_owned(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(TryLockError::Error(source)) => {
            return Err(OpenError::Unwritable {
                dir: dir.to_owned(),
                source,
            });
        }
    }
    // Best effort: the pid only makes the "in use" message more helpful.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Refuses files that are not SQLite, or are another application's SQLite database.
fn check_owner(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let not_ours = |why: &str| OpenError::NotRoomcast {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let probe = conn.query_row("PRAGMA application_id", [], |r| r.get::<_, i32>(0));
    let id = match probe {
        Ok(id) => id,
        Err(e) if sqlite_code(&e) == Some(ErrorCode::NotADatabase) => {
            return Err(not_ours("not an SQLite file"));
        }
        Err(source) => {
            return Err(OpenError::Sqlite {
                path: path.to_owned(),
                source: source.into(),
            });
        }
    };
    if id == APPLICATION_ID {
        return Ok(());
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|source| OpenError::Sqlite {
            path: path.to_owned(),
            source: source.into(),
        })?;
    if id == 0 && tables == 0 {
        return Ok(()); // A new, empty file.
    }
    Err(not_ours("an SQLite database of another application"))
}

/// WAL (readers never block the writer), full fsync on commit (an acknowledged message survives
/// power loss), a wait instead of an error when a checkpoint holds a lock, and deleted content
/// overwritten with zeros (a deleted message's text does not stay in free pages).
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(())
}

#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "only SQLite's own failures carry a code; the enum is non_exhaustive"
)]
fn sqlite_code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}
