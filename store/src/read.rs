//! Reads: the restore at start-up, and history older than core's ring.

use std::sync::Arc;

use roomcast_core::{
    Access, Emoji, IdempotencyKey, Kind, Message, MessageId, Reaction, ReadMarker, RoomId, Seq,
    Standing, State, StoredRoom, Timestamp, UserId,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// What [`Store::load`] found: every room with its newest messages, and where message ids go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Every stored room, by id.
    pub rooms: Vec<StoredRoom>,
    /// The id the next message must get at the lowest.
    pub next_message_id: MessageId,
}

/// A message's columns, and its reactions as a JSON array of `[emoji, user]` in order.
const COLUMNS: &str = "m.id, m.seq, m.user, m.text, m.sent_at, m.idempotency_key, m.kind,
    m.edited_at, m.deleted,
    (SELECT json_group_array(json_array(emoji, user)) FROM
        (SELECT emoji, user FROM reactions x WHERE x.room = m.room AND x.seq = m.seq ORDER BY x.rowid))";

impl Store {
    /// Every room, each with its last sequence number and up to `recent` of its newest messages.
    pub fn load(&self, recent: usize) -> Result<Loaded, StoreError> {
        self.load_warm(recent, Timestamp::EPOCH)
    }

    /// Every room with its last sequence number; those whose newest message was posted at or
    /// after `warm_since` also with up to `recent` of their newest messages. An idle room costs
    /// its numbering and access only; its history is read from disk when asked for.
    pub fn load_warm(&self, recent: usize, warm_since: Timestamp) -> Result<Loaded, StoreError> {
        self.read(|conn| {
            let next_message_id = conn.query_row(
                "SELECT value FROM counters WHERE name = 'next_message_id'",
                [],
                |r| r.get::<_, u64>(0),
            )?;
            let mut rooms = Vec::new();
            let mut list = conn.prepare(
                "SELECT key, id, created_at, latest, owner, private, posts FROM rooms ORDER BY id",
            )?;
            let mut members =
                conn.prepare("SELECT user FROM members WHERE room = ?1 ORDER BY user")?;
            let mut moderation =
                conn.prepare("SELECT user, role, until FROM moderation WHERE room = ?1")?;
            let mut markers =
                conn.prepare("SELECT user, seq, posts FROM read_markers WHERE room = ?1")?;
            let mut messages = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM messages m WHERE m.room = ?1 AND m.seq > ?2 ORDER BY m.seq"
            ))?;
            let mut newest =
                conn.prepare("SELECT sent_at FROM messages WHERE room = ?1 AND seq = ?2")?;
            let since = i64::try_from(warm_since.as_unix_millis()).unwrap_or(i64::MAX);
            let mut rows = list.query([])?;
            while let Some(row) = rows.next()? {
                let (key, id): (i64, String) = (row.get(0)?, row.get(1)?);
                let Some(id) = trusted(RoomId::parse(&id, usize::MAX), "room id", &id) else {
                    continue;
                };
                let latest = Seq(row.get(3)?);
                let warm = newest
                    .query_row(params![key, latest.0], |r| r.get::<_, i64>(0))
                    .optional()?
                    .is_some_and(|sent_at| sent_at >= since);
                let oldest = latest.0.saturating_sub(recent as u64);
                let recent = if warm {
                    messages
                        .query_map(params![key, oldest], |r| message(r, &id))?
                        .filter_map(Result::transpose)
                        .collect::<rusqlite::Result<Vec<_>>>()?
                } else {
                    Vec::new()
                };
                let owner: Option<String> = row.get(4)?;
                let mut access = Access {
                    owner: owner
                        .and_then(|o| trusted(UserId::parse(&o, usize::MAX), "user name", &o)),
                    private: row.get(5)?,
                    members: members
                        .query_map([key], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?
                        .into_iter()
                        .filter_map(|m: String| {
                            trusted(UserId::parse(&m, usize::MAX), "user name", &m)
                        })
                        .collect(),
                    ..Access::default()
                };
                let rows = moderation
                    .query_map([key], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<u64>>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (name, role, until) in rows {
                    let Some(user) = trusted(UserId::parse(&name, usize::MAX), "user name", &name)
                    else {
                        continue;
                    };
                    match Standing::named(&role) {
                        Some(standing) => {
                            access.grant(standing, user, until.map(Timestamp::from_unix_millis))
                        }
                        None => tracing::warn!(
                            role,
                            "skipping a stored moderation that no longer parses"
                        ),
                    }
                }
                let read = markers
                    .query_map([key], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            ReadMarker {
                                seq: Seq(r.get(1)?),
                                posts: r.get(2)?,
                            },
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .filter_map(|(name, marker)| {
                        trusted(UserId::parse(&name, usize::MAX), "user name", &name)
                            .map(|user| (user, marker))
                    })
                    .collect();
                rooms.push(StoredRoom {
                    id,
                    access,
                    created_at: Timestamp::from_unix_millis(row.get(2)?),
                    latest,
                    recent,
                    epoch: 0,
                    posts: row.get(6)?,
                    read,
                });
            }
            Ok(Loaded {
                rooms,
                next_message_id: MessageId(next_message_id),
            })
        })
        .map_err(StoreError::from)
    }

    /// Up to `limit` messages of `room` after `after` and before `below`, oldest first.
    pub fn after(
        &self,
        room: &RoomId,
        after: Seq,
        below: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, StoreError> {
        self.read(|conn| {
            query(
                conn,
                room,
                &format!(
                    "SELECT {COLUMNS} FROM messages m JOIN rooms r ON m.room = r.key
                     WHERE r.id = ?1 AND m.seq > ?2 AND m.seq < ?3 ORDER BY m.seq LIMIT ?4"
                ),
                params![room.as_str(), after.0, below.0, limit_of(limit)],
            )
        })
        .map_err(StoreError::from)
    }

    /// Up to `limit` of the newest messages of `room` before `before`, oldest first.
    pub fn before(
        &self,
        room: &RoomId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, StoreError> {
        let mut newest_first = self.read(|conn| {
            query(
                conn,
                room,
                &format!(
                    "SELECT {COLUMNS} FROM messages m JOIN rooms r ON m.room = r.key
                     WHERE r.id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3"
                ),
                params![room.as_str(), before.0, limit_of(limit)],
            )
        })?;
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Whether a stored message of `room` carries the attachment `id`: such an upload was
    /// posted, whatever its marker says (the marker goes after the answer, and a crash or a
    /// cancelled call may come between).
    pub fn names_attachment(&self, room: &RoomId, id: &str) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages m JOIN rooms r ON m.room = r.key,
                                json_each(m.kind, '$.attachments') a
                 WHERE r.id = ?1 AND m.kind IS NOT NULL
                   AND json_extract(a.value, '$.id') = ?2)",
                params![room.as_str(), id],
                |r| r.get::<_, bool>(0),
            )
        })
        .map_err(StoreError::from)
    }

    /// The oldest sequence number stored for `room`, if it has any message.
    pub fn first_seq(&self, room: &RoomId) -> Result<Option<Seq>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT min(m.seq) FROM messages m JOIN rooms r ON m.room = r.key WHERE r.id = ?1",
                [room.as_str()],
                |r| r.get::<_, Option<u64>>(0),
            )
            .optional()
            .map(|seq| seq.flatten().map(Seq))
        })
        .map_err(StoreError::from)
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn query(
    conn: &Connection,
    room: &RoomId,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Arc<Message>>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, |r| message(r, room))?;
    rows.filter_map(Result::transpose).collect()
}

/// A stored message; `None` (logged) if a stored name no longer parses, so one bad row cannot
/// keep the server from starting.
fn message(row: &Row<'_>, room: &RoomId) -> rusqlite::Result<Option<Arc<Message>>> {
    let user: String = row.get(2)?;
    let key: Option<String> = row.get(5)?;
    let Some(user) = trusted(UserId::parse(&user, usize::MAX), "user name", &user) else {
        return Ok(None);
    };
    let idempotency_key = match key {
        Some(key) => match trusted(IdempotencyKey::parse(&key), "idempotency key", &key) {
            Some(key) => Some(key),
            None => return Ok(None),
        },
        None => None,
    };
    let kind = match row.get::<_, Option<String>>(6)? {
        None => Kind::default(),
        Some(json) => match trusted(serde_json::from_str::<Kind>(&json), "entry kind", &json) {
            Some(kind) => kind,
            None => return Ok(None),
        },
    };
    let edited_at: Option<u64> = row.get(7)?;
    let reactions: String = row.get(9)?;
    let state = State {
        edited_at: edited_at.map(Timestamp::from_unix_millis),
        deleted: row.get(8)?,
        reactions: reactions_of(&reactions),
    };
    Ok(Some(Arc::new(Message {
        id: MessageId(row.get(0)?),
        room: room.clone(),
        seq: Seq(row.get(1)?),
        user,
        text: row.get(3)?,
        sent_at: Timestamp::from_unix_millis(row.get(4)?),
        idempotency_key,
        kind,
        state,
    })))
}

/// Reactions from `[[emoji, user], ...]` in the order they were made, grouped by emoji in the
/// order each first appeared (a pair that no longer parses is skipped, and logged).
fn reactions_of(json: &str) -> Vec<Reaction> {
    let pairs: Vec<(String, String)> = serde_json::from_str(json).unwrap_or_default();
    let mut reactions: Vec<Reaction> = Vec::new();
    for (emoji, user) in pairs {
        let (Some(emoji), Some(user)) = (
            trusted(Emoji::parse(&emoji), "emoji", &emoji),
            trusted(UserId::parse(&user, usize::MAX), "user name", &user),
        ) else {
            continue;
        };
        match reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => r.users.push(user),
            None => reactions.push(Reaction {
                emoji,
                users: vec![user],
            }),
        }
    }
    reactions
}

fn trusted<T, E: std::fmt::Display>(parsed: Result<T, E>, what: &str, value: &str) -> Option<T> {
    parsed
        .inspect_err(
            |e| tracing::warn!(value, error = %e, "skipping a stored {what} that no longer parses"),
        )
        .ok()
}
