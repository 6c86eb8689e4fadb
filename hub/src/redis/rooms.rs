//! What the log thread does to rooms: the poster's allowance, appends, reads, loads, the room
//! changes the hub writes, and listings.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use roomcast_core::log::{Committed, Draft, LogRead};
use roomcast_core::{
    Access, Durable, Error, Event, Kind, Message, ReadMarker, RoomId, Seq, Standing, StoredRoom,
    Timestamp, UserId,
};
use roomcast_store::Progress;

use super::keys::{Keys, ROOMS, marked_by, owned_by};
use super::reply::{array, entries, int, text};
use super::scripts::{gcra, new_epoch};
use super::{
    AppendError, IDEMPOTENCY_TTL_SECS, LIST_BATCH, Loaded, Outcome, READ_PAGE, TOMBSTONE_TTL_SECS,
};

use super::node::Node;

impl Node {
    /// Takes one post from the poster's allowance on the cluster.
    pub(super) async fn admit(&self, user: &UserId) -> Result<(), AppendError> {
        let Some(rate) = self.options.rate.filter(|r| r.per_second > 0) else {
            return Ok(());
        };
        let every = Duration::from_millis(1000 / u64::from(rate.per_second).max(1));
        let (interval, tolerance) = gcra(rate.burst, every);
        let wait: u64 = self
            .scripts
            .rate
            .key(format!("rc:{{u:{user}}}:rate"))
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        match wait {
            0 => Ok(()),
            ms => Err(AppendError::RateLimited(Duration::from_millis(ms))),
        }
    }

    pub(super) async fn append(
        &self,
        draft: Draft,
    ) -> Result<(Committed, Arc<Message>, bool), AppendError> {
        self.admit(&draft.user).await?;
        let keys = Keys::of(draft.room.as_str());
        let key = draft.idempotency_key.as_ref();
        let idem = key.map_or_else(String::new, |k| {
            Keys::idempotency(draft.room.as_str(), draft.user.as_str(), k.as_str())
        });
        let body = serde_json::to_string(&draft).expect("a draft serializes");
        let moderation = moderation_change(&draft);
        let reply: Value = self
            .scripts
            .append
            .key(&keys.meta)
            .key(&keys.log)
            .key(if key.is_some() { &idem } else { &keys.meta })
            .key(&keys.erased)
            .key(&keys.moderation)
            .arg(&body)
            .arg(self.options.history)
            .arg(&keys.channel)
            .arg(IDEMPOTENCY_TTL_SECS)
            .arg(if key.is_some() { "1" } else { "0" })
            .arg(new_epoch())
            .arg(match draft.kind {
                Kind::Delete { of } => of.0,
                Kind::Post { .. }
                | Kind::Edit { .. }
                | Kind::React { .. }
                | Kind::Moderate { .. } => 0,
            })
            .arg(moderation.0)
            .arg(moderation.1)
            .arg(moderation.2)
            .arg(if matches!(draft.kind, Kind::Post { .. }) {
                "1"
            } else {
                "0"
            })
            .arg(draft.user.as_str())
            .arg(if draft.kind.speaks() { "1" } else { "0" })
            .arg(draft.sent_at.as_unix_millis())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        let fields = array(&reply);
        let bad = || AppendError::Unavailable(format!("unexpected append reply {reply:?}"));
        let seq = match fields.first() {
            Some(Value::Int(-1)) => return Err(AppendError::RoomGone),
            Some(Value::Int(-2)) => return Err(AppendError::Repaired),
            Some(Value::Int(-3)) => {
                let refused = match fields.get(2).and_then(int) {
                    Some(until) => Error::Muted {
                        remaining: Timestamp::from_unix_millis(until)
                            .saturating_since(draft.sent_at),
                    },
                    None => Error::Banned,
                };
                return Err(AppendError::Standing(refused));
            }
            Some(v) => int(v).ok_or_else(bad)?,
            None => return Err(bad()),
        };
        let epoch = fields.get(1).and_then(int).ok_or_else(bad)?;
        let duplicate = fields.get(2).and_then(int) == Some(1);
        let message = match fields.get(3).and_then(text) {
            Some(original) if duplicate => {
                let original: Draft = serde_json::from_str(&original).map_err(|_| bad())?;
                if original.text != draft.text
                    && let Some(key) = draft.idempotency_key.clone()
                {
                    return Err(AppendError::Conflict(key, Seq(seq)));
                }
                Arc::new(original.at(Seq(seq)))
            }
            Some(_) | None => Arc::new(draft.at(Seq(seq))),
        };
        let committed = Committed {
            messages: if duplicate {
                Vec::new()
            } else {
                vec![message.clone()]
            },
            ..Committed::of(draft.room.clone(), epoch)
        };
        Ok((committed, message, duplicate))
    }

    /// Takes the text out of the deleted messages among `messages` (read from the stream, which
    /// keeps entries as appended), and out of edits of them.
    pub(super) async fn erase(
        &self,
        room: &RoomId,
        messages: &mut [Arc<Message>],
    ) -> redis::RedisResult<()> {
        let named: Vec<u64> = messages
            .iter()
            .map(|m| match m.kind {
                Kind::Edit { of } => of.0,
                Kind::Post { .. }
                | Kind::Delete { .. }
                | Kind::React { .. }
                | Kind::Moderate { .. } => m.seq.0,
            })
            .collect();
        if named.is_empty() {
            return Ok(());
        }
        let erased: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(Keys::of(room.as_str()).erased)
            .arg(&named)
            .query_async(&mut self.conn())
            .await?;
        // (The value is the deletion's own number; any entry naming it is erased, an edit
        // appended after the deletion by a node that had not yet applied it included.)
        for (m, deletion) in messages.iter_mut().zip(erased) {
            if deletion.is_some() {
                let mut wiped = Message::clone(m);
                wiped.text.clear();
                wiped.state.deleted = true;
                wiped.state.reactions.clear();
                *m = Arc::new(wiped);
            }
        }
        Ok(())
    }

    pub(super) async fn read(&self, room: &RoomId, after: Seq) -> Option<Outcome> {
        let keys = Keys::of(room.as_str());
        let reply: Value = match self
            .scripts
            .read
            .key(&keys.meta)
            .key(&keys.log)
            .key(&keys.gone)
            .key(&keys.users)
            .arg(after.0)
            .arg(READ_PAGE)
            .invoke_async(&mut self.conn())
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                // Core asks again if the hole stays.
                tracing::warn!(%room, error = %e, "reading the room's log failed");
                return None;
            }
        };
        let fields = array(&reply);
        let epoch = fields.first().and_then(int).unwrap_or(0);
        if epoch == 0 {
            let deleted = fields.get(3).and_then(int) == Some(1);
            return Some(Outcome::Missing {
                room: room.clone(),
                deleted,
            });
        }
        let latest = Seq(fields.get(1).and_then(int).unwrap_or(0));
        let messages = fields.get(2).map(entries).unwrap_or_default();
        let first_held = messages.first().map_or(latest.next(), |m| m.seq);
        let present = fields.get(4).map(|users| {
            array(users)
                .iter()
                .filter_map(text)
                .filter_map(|u| UserId::parse(&u, usize::MAX).ok())
                .collect()
        });
        Some(Outcome::Committed(Committed {
            messages,
            read: Some(LogRead {
                after,
                first_held,
                latest,
            }),
            present,
            ..Committed::of(room.clone(), epoch)
        }))
    }

    pub(super) async fn load(
        &self,
        room: &RoomId,
        history_len: usize,
    ) -> Result<Option<Loaded>, String> {
        let keys = Keys::of(room.as_str());
        let reply: Value = self
            .scripts
            .load
            .key(&keys.meta)
            .key(&keys.members)
            .key(&keys.log)
            .key(&keys.users)
            .key(&keys.moderation)
            .key(&keys.read)
            .arg(history_len)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| e.to_string())?;
        let parts = array(&reply);
        let [meta, members, newest, present, moderation, markers] = parts else {
            return Ok(None);
        };
        let mut field = std::collections::HashMap::new();
        for pair in array(meta).chunks(2) {
            if let [k, v] = pair
                && let (Some(k), Some(v)) = (text(k), text(v))
            {
                field.insert(k, v);
            }
        }
        let get = |k: &str| field.get(k).cloned();
        let Some(created) = get("c").and_then(|c| c.parse::<u64>().ok()) else {
            return Ok(None);
        };
        let user = |s: String| UserId::parse(&s, usize::MAX).ok();
        let mut access = Access {
            owner: get("o").and_then(user),
            private: get("p").as_deref() == Some("1"),
            members: array(members)
                .iter()
                .filter_map(text)
                .filter_map(user)
                .collect(),
            ..Access::default()
        };
        for pair in array(moderation).chunks(2) {
            let [k, v] = pair else { continue };
            let (Some(k), Some(until)) = (text(k), text(v).and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            let Some((standing, name)) = k.split_once('|') else {
                continue;
            };
            if let (Some(standing), Some(name)) = (Standing::named(standing), user(name.to_owned()))
            {
                access.grant(standing, name, Some(Timestamp::from_unix_millis(until)));
            }
        }
        let mut recent = entries(newest);
        recent.reverse();
        let read = array(markers)
            .chunks(2)
            .filter_map(|pair| {
                let [k, v] = pair else { return None };
                Some((user(text(k)?)?, marker(&text(v)?)?))
            })
            .collect();
        let present = array(present)
            .iter()
            .filter_map(text)
            .filter_map(|u| UserId::parse(&u, usize::MAX).ok())
            .collect();
        let stored = StoredRoom {
            id: room.clone(),
            created_at: Timestamp::from_unix_millis(created),
            access,
            latest: Seq(get("s").and_then(|s| s.parse().ok()).unwrap_or(0)),
            recent,
            epoch: get("e").and_then(|e| e.parse().ok()).unwrap_or(0),
            posts: get("n").and_then(|n| n.parse().ok()).unwrap_or(0),
            read,
        };
        Ok(Some(Loaded { stored, present }))
    }

    pub(super) async fn create(
        &self,
        room: &RoomId,
        access: &Access,
        created_at: Timestamp,
        epoch: u64,
    ) -> redis::RedisResult<bool> {
        let keys = Keys::of(room.as_str());
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(&keys.meta)
            .key(&keys.members)
            .key(&keys.log)
            .key(&keys.gone)
            .arg(created_at.as_unix_millis())
            .arg(if access.private { "1" } else { "0" })
            .arg(access.owner.as_ref().map_or("", |o| o.as_str()))
            .arg(epoch);
        for member in &access.members {
            invocation.arg(member.as_str());
        }
        let created: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok(created == 1)
    }

    /// Deletes `room` (if `only_empty`, only if nothing was ever posted to it), leaving a
    /// tombstone and telling its nodes; its owner's index forgets it. Whether it was deleted.
    pub(super) async fn delete(&self, room: &RoomId, only_empty: bool) -> redis::RedisResult<bool> {
        let keys = Keys::of(room.as_str());
        let owner: Option<String> = self
            .scripts
            .delete
            .key(&keys.meta)
            .key(&keys.members)
            .key(&keys.log)
            .key(&keys.gone)
            .key(&keys.erased)
            .key(&keys.moderation)
            .key(&keys.read)
            .arg(TOMBSTONE_TTL_SECS)
            .arg(&keys.channel)
            .arg(if only_empty { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await?;
        let Some(owner) = owner else {
            return Ok(false);
        };
        let _: Value = redis::cmd("ZREM")
            .arg(ROOMS)
            .arg(room.as_str())
            .query_async(&mut self.conn())
            .await?;
        if !owner.is_empty() {
            let _: Value = redis::cmd("SREM")
                .arg(owned_by(&owner))
                .arg(room.as_str())
                .query_async(&mut self.conn())
                .await?;
        }
        Ok(true)
    }

    /// A guest departed: their rooms where nothing was ever posted go, and their read markers
    /// everywhere; then their indexes.
    pub(super) async fn depart(&self, user: &UserId) -> redis::RedisResult<(usize, usize)> {
        let (owned, marked) = (owned_by(user.as_str()), marked_by(user.as_str()));
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&owned)
            .query_async(&mut self.conn())
            .await?;
        let mut deleted = 0;
        for room in rooms
            .iter()
            .filter_map(|r| RoomId::parse(r, usize::MAX).ok())
        {
            deleted += usize::from(self.delete(&room, true).await?);
        }
        let marks: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&marked)
            .query_async(&mut self.conn())
            .await?;
        for room in &marks {
            let _: Value = redis::cmd("HDEL")
                .arg(Keys::of(room).read)
                .arg(user.as_str())
                .query_async(&mut self.conn())
                .await?;
        }
        let _: Value = redis::cmd("DEL")
            .arg(&owned)
            .arg(&marked)
            .query_async(&mut self.conn())
            .await?;
        Ok((deleted, marks.len()))
    }

    /// Persists one durable room change.
    pub(super) async fn write_event(&self, event: &Event) -> redis::RedisResult<()> {
        // Presence and listeners are never stored.
        let Some(durable) = event.durable() else {
            return Ok(());
        };
        match durable {
            Durable::RoomCreated {
                room,
                created_at,
                owner,
                private,
            } => {
                let access = Access {
                    owner: owner.cloned(),
                    private,
                    ..Access::default()
                };
                let _: Value = redis::cmd("ZADD")
                    .arg(ROOMS)
                    .arg(0)
                    .arg(room.as_str())
                    .query_async(&mut self.conn())
                    .await?;
                if !self.create(room, &access, created_at, new_epoch()).await? {
                    // Another node made it first: theirs stands, and this node takes its
                    // owner, privacy and members from Redis.
                    self.tell(Outcome::AccessChanged(room.clone()));
                } else if let Some(owner) = owner {
                    let _: Value = redis::cmd("SADD")
                        .arg(owned_by(owner.as_str()))
                        .arg(room.as_str())
                        .query_async(&mut self.conn())
                        .await?;
                }
                self.subscribe(Keys::of(room.as_str()).channel).await;
            }
            Durable::MemberAdded { room, user } | Durable::MemberRemoved { room, user } => {
                let keys = Keys::of(room.as_str());
                let change = if matches!(durable, Durable::MemberAdded { .. }) {
                    "SADD"
                } else {
                    "SREM"
                };
                // The other nodes serving the room read its access again.
                let _: Value = self
                    .scripts
                    .member
                    .key(&keys.members)
                    .arg(change)
                    .arg(user.as_str())
                    .arg(&keys.channel)
                    .invoke_async(&mut self.conn())
                    .await?;
            }
            // Deleted or expired: either way the room goes from Redis.
            Durable::RoomClosed { room, reason: _ } => {
                self.delete(room, false).await?;
            }
            // Messages are in the log already.
            Durable::Published(_) => {}
            Durable::ReadForgotten { room, user } => {
                let _: Value = redis::cmd("HDEL")
                    .arg(Keys::of(room.as_str()).read)
                    .arg(user.as_str())
                    .query_async(&mut self.conn())
                    .await?;
            }
            Durable::Read { room, user, marker } => {
                let _: Value = self
                    .scripts
                    .mark_read
                    .key(Keys::of(room.as_str()).read)
                    .arg(user.as_str())
                    .arg(marker.seq.0)
                    .arg(marker.posts)
                    .invoke_async(&mut self.conn())
                    .await?;
                if user.is_guest() {
                    let _: Value = redis::cmd("SADD")
                        .arg(marked_by(user.as_str()))
                        .arg(room.as_str())
                        .query_async(&mut self.conn())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Writes room changes in the order the hub made them, reporting each batch stored.
    pub(super) async fn write_loop(
        self: Arc<Self>,
        writes: async_channel::Receiver<Vec<Event>>,
        progress: async_channel::Sender<Progress>,
    ) {
        let mut done = 0u64;
        while let Ok(batch) = writes.recv().await {
            for event in &batch {
                // The connection manager reconnects; a write is retried until Redis takes it
                // or the hub gives up on the node.
                let mut tries = 0;
                while let Err(e) = self.write_event(event).await {
                    tries += 1;
                    if tries >= 20 {
                        let _ = progress.try_send(Progress::Failed(format!("Redis: {e}")));
                        return;
                    }
                    smol::Timer::after(Duration::from_millis(250)).await;
                }
            }
            done += 1;
            let _ = progress.try_send(Progress::Committed(done));
        }
    }

    /// A page of the index's rooms after `after` that `user` may see (`Policy::list`, the
    /// rule core lists by).
    pub(super) async fn list(
        &self,
        user: &UserId,
        after: Option<&str>,
        limit: usize,
        policy: &roomcast_core::Policy,
    ) -> Result<roomcast_core::RoomPage, String> {
        let mut conn = self.conn();
        let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(ROOMS)
            .arg(&from)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(LIST_BATCH)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut rooms = Vec::with_capacity(ids.len());
        for id in &ids {
            let Ok(room) = RoomId::parse(id, usize::MAX) else {
                continue;
            };
            let keys = Keys::of(id);
            let reply: Value = self
                .scripts
                .summary
                .key(&keys.meta)
                .key(&keys.members)
                .key(&keys.log)
                .key(&keys.users)
                .key(&keys.read)
                .arg(user.as_str())
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let f = array(&reply);
            let (Some(created), Some(latest)) = (f.first().and_then(int), f.get(1).and_then(int))
            else {
                continue; // Deleted since the index was read.
            };
            let created_at = Timestamp::from_unix_millis(created);
            let user_of = |v: &Value| text(v).and_then(|u| UserId::parse(&u, usize::MAX).ok());
            let first = f.get(6).and_then(int).filter(|&s| s > 0);
            let members: Vec<UserId> = f
                .get(4)
                .map(array)
                .unwrap_or_default()
                .iter()
                .filter_map(user_of)
                .collect();
            let private = f.get(3).and_then(text).as_deref() == Some("1");
            let unread = ReadMarker::unread(
                f.get(8).and_then(text).and_then(|m| marker(&m)).as_ref(),
                f.get(7).and_then(int).unwrap_or(0),
                private && members.contains(user),
            );
            rooms.push(roomcast_core::RoomSummary {
                id: room,
                latest: Seq(latest),
                first_held: first.map_or(Seq(latest).next(), Seq),
                // Listeners are counted per node; who is present, across nodes.
                listeners: 0,
                users: f.get(5).and_then(int).map_or(0, |n| n as usize),
                created_at,
                last_active: created_at,
                owner: f.get(2).and_then(user_of),
                private,
                members,
                unread,
            });
        }
        let mut page = policy.list(user, rooms.into_iter(), limit);
        // The index may go on past this batch: a short page says where.
        if page.next_after.is_none() && page.rooms.len() < limit && ids.len() == LIST_BATCH {
            page.next_after = ids.last().and_then(|id| RoomId::parse(id, usize::MAX).ok());
        }
        Ok(page)
    }
}

/// A read marker as the room's `read` hash keeps it: `<seq> <posts>`.
fn marker(field: &str) -> Option<ReadMarker> {
    let (seq, posts) = field.split_once(' ')?;
    Some(ReadMarker {
        seq: Seq(seq.parse().ok()?),
        posts: posts.parse().ok()?,
    })
}

/// What a moderation entry changes in the room's moderation hash: `+<standing>` or
/// `-<standing>` (empty for any other entry, and a kick), the user, and for a mute when it
/// ends (ms).
fn moderation_change(draft: &Draft) -> (String, String, u64) {
    let Kind::Moderate { user, action } = &draft.kind else {
        return (String::new(), String::new(), 0);
    };
    let op = match action.standing() {
        Some((standing, given)) => format!("{}{}", if given { '+' } else { '-' }, standing.name()),
        None => String::new(),
    };
    let until = action
        .until(draft.sent_at)
        .map_or(0, |t| t.as_unix_millis());
    (op, user.to_string(), until)
}
