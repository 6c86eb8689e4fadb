//! History beyond core's ring: pages and resumes that reach further back are completed from
//! where the messages are kept, the store or the shared log's streams (on the blocking pool), so a
//! client sees one continuous history.

use std::sync::Arc;

use roomcast_core::{Cursor, Gap, HistoryPage, Message, RoomId, Seq};
use roomcast_store::Store;

/// Where messages older than core's ring are read: the embedded store, or Redis.
pub(crate) trait Older: Send + Sync {
    /// Up to `limit` messages of `room` after `after` and before `below`, oldest first.
    fn after(
        &self,
        room: &RoomId,
        after: Seq,
        below: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String>;
    /// Up to `limit` messages of `room` before `before`, oldest first.
    fn before(&self, room: &RoomId, before: Seq, limit: usize)
    -> Result<Vec<Arc<Message>>, String>;
    /// The oldest sequence number kept for `room`.
    fn first_seq(&self, room: &RoomId) -> Result<Option<Seq>, String>;
    /// Whether the messages read here are as later edits, deletions and reactions left them
    /// (the store keeps each message's row so), so core may change them; a shared log's
    /// stream holds every entry as it was appended.
    fn as_changed(&self) -> bool;
}

impl Older for Store {
    fn after(
        &self,
        room: &RoomId,
        after: Seq,
        below: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String> {
        Store::after(self, room, after, below, limit).map_err(|e| e.to_string())
    }

    fn before(
        &self,
        room: &RoomId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String> {
        Store::before(self, room, before, limit).map_err(|e| e.to_string())
    }

    fn first_seq(&self, room: &RoomId) -> Result<Option<Seq>, String> {
        Store::first_seq(self, room).map_err(|e| e.to_string())
    }

    fn as_changed(&self) -> bool {
        true
    }
}

/// Messages read from the store at a time while a listener catches up.
pub(crate) const CATCH_UP_CHUNK: usize = 500;

/// Completes `page` (core's answer for `cursor`) with what the store holds before the ring.
pub(crate) fn complete(
    store: &dyn Older,
    cursor: Cursor,
    mut page: HistoryPage,
) -> Result<HistoryPage, String> {
    let (room, limit) = (&page.room.clone(), page.limit);
    let ring_first = page.first_held;
    match cursor {
        Cursor::Newest | Cursor::Before(_) => {
            let before = match cursor {
                Cursor::Before(before) => before.min(page.latest.next()),
                Cursor::Newest | Cursor::After(_) => page.latest.next(),
            };
            let top = page
                .messages
                .first()
                .map_or(before.min(ring_first), |m| m.seq);
            let missing = limit.saturating_sub(page.messages.len());
            // Older messages are in the store only if this page reached the ring's start.
            if missing > 0 && top <= ring_first {
                let mut older = store.before(room, top, missing)?;
                older.append(&mut page.messages);
                page.messages = older;
            }
        }
        Cursor::After(_) => {
            if let Some(gap) = page.gap {
                let (older, gap) = fill_gap(store, room, gap, limit)?;
                let mut messages = older;
                messages.append(&mut page.messages);
                messages.truncate(limit);
                page.messages = messages;
                page.gap = gap;
            }
        }
    }
    if let Some(first) = store.first_seq(room)? {
        page.first_held = page.first_held.min(first);
    }
    Ok(page)
}

/// Up to `limit` messages of a gap from the store, and what remains of the gap before them
/// (retention may have dropped the start).
pub(crate) fn fill_gap(
    store: &dyn Older,
    room: &RoomId,
    gap: Gap,
    limit: usize,
) -> Result<(Vec<Arc<Message>>, Option<Gap>), String> {
    let older = store.after(room, gap.after, gap.first_held, limit)?;
    let rest = match older.first() {
        None => Some(gap),
        Some(first) if first.seq > gap.after.next() => Some(Gap {
            after: gap.after,
            first_held: first.seq,
        }),
        Some(_) => None,
    };
    Ok((older, rest))
}
