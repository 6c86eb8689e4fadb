//! The writer thread: group commit of core's durable events, and retention between commits.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use roomcast_core::{Durable, Event, Kind, Message, RoomId, Timestamp};
use rusqlite::{Connection, Transaction, params};

use crate::{Store, StoreError};

/// How much history to keep. Applied in the background; `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of each room's newest messages.
    pub messages_per_room: Option<u64>,
    /// Drop messages older than this.
    pub max_age: Option<Duration>,
}

/// Batches the writer may fall behind before [`Journal::write`] waits (backpressure).
const QUEUE: usize = 4096;
/// Most records in one transaction; the rest go in the next.
const MAX_GROUP: usize = 16_384;
/// Rows one retention step deletes: a commit waits at most this long behind retention.
const RETENTION_CHUNK: usize = 512;
/// How often retention looks for work when it found none.
const RETENTION_PERIOD: Duration = Duration::from_secs(1);

/// The handle to the writer thread. Batches of core's durable [`Event`]s are committed in the
/// order written; [`progress`] reports how many are durable so far, or that the writer failed
/// (and stopped: nothing after the failure is committed). What to do then is the host's choice.
///
/// [`progress`]: Journal::progress
#[derive(Debug)]
pub struct Journal {
    batches: Option<SyncSender<Vec<Event>>>,
    progress: async_channel::Receiver<Progress>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer reports after each commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// This many batches are durable so far.
    Committed(u64),
    /// A commit (or retention) failed, with this reason; the writer has stopped.
    Failed(String),
}

/// Reads the wall clock for retention by age: the host's clock, passed in.
pub type Clock = fn() -> Timestamp;

/// The writer thread has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store's writer has stopped")]
pub struct Stopped;

impl Store {
    /// Starts the writer thread.
    pub fn journal(&self, retention: Retention, clock: Clock) -> Result<Journal, StoreError> {
        let conn = self.write_connection()?;
        let writer = Writer::new(conn, retention, clock)?;
        let (batches, batch_rx) = sync_channel(QUEUE);
        let (progress_tx, progress) = async_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("roomcast-store".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| writer.run(&batch_rx, &progress_tx));
                if std::panic::catch_unwind(run).is_err() {
                    let failed = Progress::Failed("the writer thread panicked".into());
                    let _ = progress_tx.try_send(failed);
                }
            })?;
        Ok(Journal {
            batches: Some(batches),
            progress,
            thread: Some(thread),
        })
    }
}

impl Journal {
    /// Queues one batch (committed whole, after every earlier batch). Waits while the writer is
    /// far behind.
    pub fn write(&self, batch: Vec<Event>) -> Result<(), Stopped> {
        let batches = self.batches.as_ref().ok_or(Stopped)?;
        match batches.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(batch)) => batches.send(batch).map_err(|_| Stopped),
            Err(TrySendError::Disconnected(_)) => Err(Stopped),
        }
    }

    /// Yields the number of batches durable so far after each commit, or the failure that
    /// stopped the writer.
    pub fn progress(&self) -> &async_channel::Receiver<Progress> {
        &self.progress
    }

    /// Commits everything queued, stops the writer and waits for it.
    pub fn close(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The state of the writer thread.
struct Writer {
    conn: Connection,
    retention: Retention,
    clock: Clock,
    /// Each existing room's key in the `rooms` table.
    keys: HashMap<RoomId, i64>,
    next_message_id: u64,
    /// Rooms with messages appended since count retention last looked at them.
    grown: HashSet<i64>,
    commits: metrics::Counter,
    records: metrics::Counter,
    commit_seconds: metrics::Histogram,
    retained_out: metrics::Counter,
}

impl Writer {
    fn new(conn: Connection, retention: Retention, clock: Clock) -> rusqlite::Result<Writer> {
        let mut keys = HashMap::new();
        {
            let mut rooms = conn.prepare("SELECT id, key FROM rooms")?;
            let mut rows = rooms.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                if let Ok(id) = RoomId::parse(&id, usize::MAX) {
                    keys.insert(id, row.get(1)?);
                }
            }
        }
        let next_message_id = conn.query_row(
            "SELECT value FROM counters WHERE name = 'next_message_id'",
            [],
            |r| r.get(0),
        )?;
        Ok(Writer {
            conn,
            retention,
            clock,
            grown: keys.values().copied().collect(),
            keys,
            next_message_id,
            commits: metrics::counter!("roomcast_store_commits_total"),
            records: metrics::counter!("roomcast_store_records_total"),
            commit_seconds: metrics::histogram!("roomcast_store_commit_seconds"),
            retained_out: metrics::counter!("roomcast_store_retention_deleted_total"),
        })
    }

    fn run(mut self, batches: &Receiver<Vec<Event>>, progress: &async_channel::Sender<Progress>) {
        let mut durable = 0u64;
        let mut retention_due = Instant::now();
        loop {
            let wait = retention_due.saturating_duration_since(Instant::now());
            let first = match batches.recv_timeout(wait) {
                Ok(batch) => Some(batch),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(first) = first {
                // Group commit: everything already queued shares this transaction.
                let mut group = vec![first];
                let mut records = group[0].len();
                while records < MAX_GROUP {
                    match batches.try_recv() {
                        Ok(batch) => {
                            records += batch.len();
                            group.push(batch);
                        }
                        Err(_) => break,
                    }
                }
                let started = Instant::now();
                if let Err(e) = self.commit(&group) {
                    let _ = progress.try_send(Progress::Failed(e.to_string()));
                    return;
                }
                self.commit_seconds.record(started.elapsed().as_secs_f64());
                self.commits.increment(1);
                self.records.increment(records as u64);
                durable += group.len() as u64;
                let _ = progress.try_send(Progress::Committed(durable));
            }
            if Instant::now() >= retention_due {
                match self.retain() {
                    // More to do: go on after whatever commits are waiting.
                    Ok(true) => retention_due = Instant::now(),
                    Ok(false) => retention_due = Instant::now() + RETENTION_PERIOD,
                    Err(e) => {
                        let _ = progress.try_send(Progress::Failed(e.to_string()));
                        return;
                    }
                }
            }
        }
    }

    fn commit(&mut self, group: &[Vec<Event>]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        // Each room's newest number and how many messages (posts) it gained.
        let mut latest: HashMap<i64, (u64, u64)> = HashMap::new();
        let next_before = self.next_message_id;
        // Presence and listeners are not stored: only durable events are.
        for event in group.iter().flatten().filter_map(Event::durable) {
            match event {
                Durable::RoomCreated {
                    room,
                    created_at,
                    owner,
                    private,
                } => {
                    let key = create(&tx, &mut self.keys, room, created_at)?;
                    tx.execute(
                        "UPDATE rooms SET owner = ?1, private = ?2 WHERE key = ?3",
                        params![owner.map(|o| o.as_str()), private, key],
                    )?;
                }
                Durable::MemberAdded { room, user } => {
                    if let Some(key) = self.keys.get(room) {
                        tx.execute(
                            "INSERT OR IGNORE INTO members (room, user) VALUES (?1, ?2)",
                            params![key, user.as_str()],
                        )?;
                    }
                }
                Durable::MemberRemoved { room, user } => {
                    if let Some(key) = self.keys.get(room) {
                        tx.execute(
                            "DELETE FROM members WHERE room = ?1 AND user = ?2",
                            params![key, user.as_str()],
                        )?;
                    }
                }
                Durable::RoomClosed { room, .. } => {
                    if let Some(key) = self.keys.remove(room) {
                        tx.execute("DELETE FROM rooms WHERE key = ?1", [key])?;
                        tx.execute("DELETE FROM members WHERE room = ?1", [key])?;
                        tx.execute("DELETE FROM moderation WHERE room = ?1", [key])?;
                        tx.execute("DELETE FROM read_markers WHERE room = ?1", [key])?;
                        tx.execute("INSERT OR IGNORE INTO purges (room) VALUES (?1)", [key])?;
                        latest.remove(&key);
                    }
                }
                Durable::Read { room, user, marker } => {
                    if let Some(key) = self.keys.get(room) {
                        tx.prepare_cached(
                            "INSERT INTO read_markers (room, user, seq, posts) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (room, user) DO UPDATE SET seq = excluded.seq, posts = excluded.posts
                             WHERE excluded.seq > read_markers.seq",
                        )?
                        .execute(params![key, user.as_str(), marker.seq.0, marker.posts])?;
                    }
                }
                Durable::ReadForgotten { room, user } => {
                    if let Some(key) = self.keys.get(room) {
                        tx.prepare_cached(
                            "DELETE FROM read_markers WHERE room = ?1 AND user = ?2",
                        )?
                        .execute(params![key, user.as_str()])?;
                    }
                }
                Durable::Published(m) => {
                    let key = match self.keys.get(&m.room) {
                        Some(key) => *key,
                        // Core never publishes to a room it did not create; store the message
                        // anyway rather than lose it.
                        None => create(&tx, &mut self.keys, &m.room, m.sent_at)?,
                    };
                    // A plain message (most rows) has no kind stored.
                    let plain = m.kind == Kind::default();
                    let kind = (!plain)
                        .then(|| serde_json::to_string(&m.kind).expect("a kind serializes"));
                    tx.prepare_cached(
                        "INSERT INTO messages
                         (id, room, seq, user, text, sent_at, idempotency_key, kind, of, deleted)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        m.id.0,
                        key,
                        m.seq.0,
                        m.user.as_str(),
                        m.text,
                        m.sent_at.as_unix_millis(),
                        m.idempotency_key.as_ref().map(|k| k.as_str()),
                        kind,
                        m.changes().map(|s| s.0),
                        m.state.deleted,
                    ])?;
                    change(&tx, key, m)?;
                    let (seq, posts) = latest.entry(key).or_default();
                    *seq = m.seq.0;
                    *posts += u64::from(matches!(m.kind, Kind::Post { .. }));
                    self.next_message_id = self.next_message_id.max(m.id.0 + 1);
                }
            }
        }
        for (key, (seq, posts)) in &latest {
            tx.prepare_cached("UPDATE rooms SET latest = ?1, posts = posts + ?2 WHERE key = ?3")?
                .execute(params![seq, posts, key])?;
        }
        if self.next_message_id != next_before {
            tx.execute(
                "UPDATE counters SET value = ?1 WHERE name = 'next_message_id'",
                [self.next_message_id],
            )?;
        }
        tx.commit()?;
        if self.retention.messages_per_room.is_some() {
            self.grown.extend(latest.keys());
        }
        Ok(())
    }

    /// One bounded step of retention; true if more work is waiting.
    fn retain(&mut self) -> rusqlite::Result<bool> {
        let chunk = RETENTION_CHUNK as i64;
        // Deleted rooms first: their messages are unreachable already.
        let purge: Option<i64> = self
            .conn
            .query_row("SELECT room FROM purges LIMIT 1", [], |r| r.get(0))
            .ok();
        if let Some(key) = purge {
            let tx = self.conn.transaction()?;
            let deleted = tx.execute(
                "DELETE FROM messages WHERE id IN
                 (SELECT id FROM messages WHERE room = ?1 LIMIT ?2)",
                params![key, chunk],
            )?;
            if deleted < RETENTION_CHUNK {
                tx.execute("DELETE FROM purges WHERE room = ?1", [key])?;
            }
            tx.commit()?;
            return Ok(true);
        }
        if let Some(age) = self.retention.max_age {
            let cutoff = (self.clock)()
                .as_unix_millis()
                .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            // Ids are assigned in time order, so the old messages are the lowest ids: delete the
            // old prefix of one chunk (no index on time, no scan past the first young message).
            let oldest: Vec<(i64, u64)> = self
                .conn
                .prepare_cached("SELECT id, sent_at FROM messages ORDER BY id LIMIT ?1")?
                .query_map([chunk], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let old = oldest.iter().take_while(|(_, at)| *at < cutoff).count();
            if old > 0 {
                let last = oldest[old - 1].0;
                let deleted = self
                    .conn
                    .execute("DELETE FROM messages WHERE id <= ?1", [last])?;
                self.retained_out.increment(deleted as u64);
                if old == oldest.len() {
                    return Ok(true);
                }
            }
        }
        if let Some(keep) = self.retention.messages_per_room {
            let Some(&key) = self.grown.iter().next() else {
                return Ok(false);
            };
            let deleted = self.conn.execute(
                "DELETE FROM messages WHERE id IN
                 (SELECT m.id FROM messages m JOIN rooms r ON m.room = r.key
                  WHERE r.key = ?1 AND m.seq <= r.latest - ?2 ORDER BY m.seq LIMIT ?3)",
                params![key, keep, chunk],
            )?;
            self.retained_out.increment(deleted as u64);
            if deleted < RETENTION_CHUNK {
                self.grown.remove(&key);
            }
            return Ok(!self.grown.is_empty());
        }
        Ok(false)
    }
}

/// Inserts a room and remembers its key.
fn create(
    tx: &Transaction<'_>,
    keys: &mut HashMap<RoomId, i64>,
    room: &RoomId,
    created_at: Timestamp,
) -> rusqlite::Result<i64> {
    if let Some(old) = keys.remove(room) {
        // Not expected (core announces a room once); keep the newest, purge the old one.
        tx.execute("DELETE FROM rooms WHERE key = ?1", [old])?;
        tx.execute("INSERT OR IGNORE INTO purges (room) VALUES (?1)", [old])?;
    }
    tx.prepare_cached("INSERT INTO rooms (id, created_at, latest) VALUES (?1, ?2, 0)")?
        .execute(params![room.as_str(), created_at.as_unix_millis()])?;
    let key = tx.last_insert_rowid();
    keys.insert(room.clone(), key);
    Ok(key)
}

/// Makes the change entry `m` to the row of the message it names: core decided it (an entry
/// whose message was deleted carries no text and changes nothing).
fn change(tx: &Transaction<'_>, room: i64, m: &Message) -> rusqlite::Result<()> {
    match &m.kind {
        Kind::Post { .. } => {}
        Kind::Moderate { user, action } => match action.standing() {
            Some((standing, true)) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO moderation (room, user, role, until) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    room,
                    user.as_str(),
                    standing.name(),
                    action.until(m.sent_at).map(|t| t.as_unix_millis()),
                ])?;
            }
            Some((standing, false)) => {
                tx.prepare_cached(
                    "DELETE FROM moderation WHERE room = ?1 AND user = ?2 AND role = ?3",
                )?
                .execute(params![room, user.as_str(), standing.name()])?;
            }
            None => {}
        },
        Kind::Edit { of } => {
            tx.prepare_cached(
                "UPDATE messages SET text = ?1, edited_at = ?2
                 WHERE room = ?3 AND seq = ?4 AND deleted = 0 AND ?5 = 0",
            )?
            .execute(params![
                m.text,
                m.sent_at.as_unix_millis(),
                room,
                of.0,
                m.state.deleted
            ])?;
        }
        Kind::Delete { of } => {
            // The text goes from the message and from every edit of it (the only changes with
            // text), and the message's attachments with it.
            tx.prepare_cached(
                "UPDATE messages SET text = '', deleted = 1,
                    kind = CASE WHEN seq = ?2 AND kind IS NOT NULL
                        THEN json_remove(kind, '$.attachments') ELSE kind END
                 WHERE room = ?1 AND (seq = ?2 OR (of = ?2 AND text != ''))",
            )?
            .execute(params![room, of.0])?;
            tx.prepare_cached("DELETE FROM reactions WHERE room = ?1 AND seq = ?2")?
                .execute(params![room, of.0])?;
        }
        Kind::React { of, emoji, added } => {
            let sql = if *added {
                "INSERT OR IGNORE INTO reactions (room, seq, emoji, user)
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS
                 (SELECT 1 FROM messages WHERE room = ?1 AND seq = ?2 AND deleted = 0)"
            } else {
                "DELETE FROM reactions WHERE room = ?1 AND seq = ?2 AND emoji = ?3 AND user = ?4"
            };
            tx.prepare_cached(sql)?.execute(params![
                room,
                of.0,
                emoji.as_str(),
                m.user.as_str()
            ])?;
        }
    }
    Ok(())
}
