//! A room's history: a bounded ring of its newest messages, readable by sequence range, plus the
//! idempotency keys of the messages it still holds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ids::{IdempotencyKey, Seq, UserName};
use crate::message::{Kind, Message};

/// Messages after `after` and before `first_held` are no longer held: a reader that asked for
/// them is told so rather than silently skipped ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The point the reader asked to continue after.
    pub after: Seq,
    /// The oldest sequence number still held; everything from here on is delivered.
    pub first_held: Seq,
}

#[derive(Debug, Clone)]
pub(crate) struct History {
    capacity: usize,
    messages: VecDeque<Arc<Message>>,
    latest: Seq,
    /// Idempotency keys of held messages, forgotten when their message leaves the ring.
    keys: BTreeMap<(UserName, IdempotencyKey), Seq>,
}

impl History {
    /// An empty history keeping at most `capacity` (at least one) messages.
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            messages: VecDeque::new(),
            latest: Seq::ZERO,
            keys: BTreeMap::new(),
        }
    }

    /// A history rebuilt from storage: `latest` continues the room's numbering, and the
    /// contiguous run of `recent` that ends at `latest` (its newest `capacity`) is held again,
    /// with its idempotency keys.
    pub(crate) fn restore(capacity: usize, latest: Seq, recent: Vec<Arc<Message>>) -> Self {
        let mut history = History::new(capacity);
        for message in recent {
            if message.seq > latest || message.seq == Seq::ZERO {
                continue;
            }
            if message.seq != history.latest.next() {
                // Not contiguous with what came before: start the run again here.
                history = History::new(capacity);
            }
            history.latest = Seq(message.seq.0 - 1);
            history.push(message);
        }
        if history.latest != latest {
            history = History::new(capacity);
        }
        history.latest = latest;
        history
    }

    /// How many messages it holds.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The newest sequence number ever assigned; `Seq::ZERO` before the first message.
    pub(crate) fn latest(&self) -> Seq {
        self.latest
    }

    /// The oldest sequence number held (`latest + 1` when nothing is held).
    pub(crate) fn first_held(&self) -> Seq {
        self.messages.front().map_or(self.latest.next(), |m| m.seq)
    }

    /// Appends the next message, evicting the oldest when full. `message.seq` must be
    /// `latest + 1`; core assigns it so.
    pub(crate) fn push(&mut self, message: Arc<Message>) {
        debug_assert_eq!(
            message.seq,
            self.latest.next(),
            "sequence numbers are contiguous"
        );
        if self.messages.len() == self.capacity
            && let Some(old) = self.messages.pop_front()
            && let Some(key) = &old.idempotency_key
        {
            self.keys.remove(&(old.user.clone(), key.clone()));
        }
        if let Some(key) = &message.idempotency_key {
            self.keys
                .insert((message.user.clone(), key.clone()), message.seq);
        }
        self.latest = message.seq;
        self.messages.push_back(message);
    }

    /// Forgets everything held and continues the numbering after `latest`: the log no longer
    /// holds what came between (a trimmed shared log), or its history was lost (`Seq::ZERO`).
    pub(crate) fn skip_to(&mut self, latest: Seq) {
        *self = History::new(self.capacity);
        self.latest = latest;
    }

    /// The held message with this sequence number.
    pub(crate) fn get(&self, seq: Seq) -> Option<&Arc<Message>> {
        let index = seq.0.checked_sub(self.first_held().0)?;
        self.messages.get(usize::try_from(index).ok()?)
    }

    /// Puts `message` in the place of the held entry with its sequence number (a change made
    /// it); false if that entry is not held.
    pub(crate) fn replace(&mut self, message: Arc<Message>) -> bool {
        let Some(index) = message
            .seq
            .0
            .checked_sub(self.first_held().0)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        match self.messages.get_mut(index) {
            Some(slot) => {
                *slot = message;
                true
            }
            None => false,
        }
    }

    /// Takes the text out of every held edit of message `of` (which was deleted).
    pub(crate) fn wipe_edits_of(&mut self, of: Seq) {
        for slot in &mut self.messages {
            if matches!(slot.kind, Kind::Edit { of: o } if o == of) && !slot.state.deleted {
                let mut wiped = Message::clone(slot);
                wiped.text.clear();
                wiped.state.deleted = true;
                *slot = Arc::new(wiped);
            }
        }
    }

    /// The held message `user` posted with `key`, if still held.
    pub(crate) fn find_key(&self, user: &UserName, key: &IdempotencyKey) -> Option<&Arc<Message>> {
        let seq = self.keys.get(&(user.clone(), key.clone()))?;
        self.get(*seq)
    }

    /// Up to `limit` messages after `after`, oldest first, and the gap if some of them are no
    /// longer held. `after` must not be past `latest`.
    pub(crate) fn after(&self, after: Seq, limit: usize) -> (Vec<Arc<Message>>, Option<Gap>) {
        let first_held = self.first_held();
        let gap = (after.next() < first_held).then_some(Gap { after, first_held });
        let start = after.next().max(first_held);
        let skip = usize::try_from(start.0 - first_held.0).unwrap_or(usize::MAX);
        (
            self.messages
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
            gap,
        )
    }

    /// Up to `limit` of the newest messages before `before`, oldest first.
    pub(crate) fn before(&self, before: Seq, limit: usize) -> Vec<Arc<Message>> {
        let first_held = self.first_held().0;
        let end = before.0.min(self.latest.next().0).max(first_held);
        let end = usize::try_from(end - first_held).unwrap_or(usize::MAX);
        let start = end.saturating_sub(limit);
        self.messages.range(start..end).cloned().collect()
    }

    /// Iterates over the held messages, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Message>> {
        self.messages.iter()
    }

    /// How many idempotency keys are remembered.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, RoomId};
    use crate::time::Timestamp;

    fn msg(seq: u64, key: Option<&str>) -> Arc<Message> {
        Arc::new(Message {
            id: MessageId(seq),
            room: RoomId::parse("r", 8).unwrap(),
            seq: Seq(seq),
            user: UserName::parse("ada", 8).unwrap(),
            text: format!("m{seq}"),
            sent_at: Timestamp::EPOCH,
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
            kind: Kind::default(),
            state: crate::message::State::default(),
        })
    }

    fn seqs(ms: &[Arc<Message>]) -> Vec<u64> {
        ms.iter().map(|m| m.seq.0).collect()
    }

    fn filled(capacity: usize, n: u64) -> History {
        let mut h = History::new(capacity);
        for s in 1..=n {
            h.push(msg(s, None));
        }
        h
    }

    #[test]
    fn restore_continues_the_numbering_and_keeps_the_newest_keys() {
        let recent = (3..=8).map(|s| msg(s, Some(&format!("k{s}")))).collect();
        let h = History::restore(4, Seq(8), recent);
        assert_eq!((h.first_held(), h.latest()), (Seq(5), Seq(8)));
        assert_eq!(h.key_count(), 4);
        let ada = UserName::parse("ada", 8).unwrap();
        assert!(
            h.find_key(&ada, &IdempotencyKey::parse("k5").unwrap())
                .is_some()
        );
        assert!(
            h.find_key(&ada, &IdempotencyKey::parse("k4").unwrap())
                .is_none()
        );

        let empty = History::restore(4, Seq(9), Vec::new());
        assert_eq!((empty.first_held(), empty.latest()), (Seq(10), Seq(9)));

        // A hole keeps only the run after it; a run that does not reach `latest` is dropped.
        let holed = vec![msg(1, None), msg(3, None), msg(4, None)];
        let h = History::restore(10, Seq(4), holed.clone());
        assert_eq!(seqs(&h.after(Seq::ZERO, 10).0), [3, 4]);
        let h = History::restore(10, Seq(6), holed);
        assert_eq!((h.first_held(), h.latest()), (Seq(7), Seq(6)));
    }

    #[test]
    fn ring_keeps_newest() {
        let h = filled(3, 5);
        assert_eq!(h.iter().count(), 3);
        assert_eq!(h.latest(), Seq(5));
        assert_eq!(h.first_held(), Seq(3));
        assert_eq!(h.get(Seq(2)), None);
        assert_eq!(h.get(Seq(4)).map(|m| m.seq), Some(Seq(4)));
        assert_eq!(h.get(Seq(6)), None);
    }

    #[test]
    fn empty_history() {
        let h = History::new(0);
        assert_eq!(h.latest(), Seq::ZERO);
        assert_eq!(h.first_held(), Seq(1));
        assert_eq!(h.after(Seq::ZERO, 10), (vec![], None));
        assert!(h.before(Seq(100), 10).is_empty());
    }

    #[test]
    fn after_reads_forward_and_reports_gaps() {
        let h = filled(3, 5);
        let (ms, gap) = h.after(Seq(3), 10);
        assert_eq!((seqs(&ms), gap), (vec![4, 5], None));
        let (ms, gap) = h.after(Seq(2), 10);
        assert_eq!((seqs(&ms), gap), (vec![3, 4, 5], None));
        let (ms, gap) = h.after(Seq(1), 10);
        assert_eq!(seqs(&ms), vec![3, 4, 5]);
        assert_eq!(
            gap,
            Some(Gap {
                after: Seq(1),
                first_held: Seq(3)
            })
        );
        let (ms, gap) = h.after(Seq::ZERO, 2);
        assert_eq!(seqs(&ms), vec![3, 4]);
        assert_eq!(
            gap,
            Some(Gap {
                after: Seq::ZERO,
                first_held: Seq(3)
            })
        );
        assert_eq!(h.after(Seq(5), 10), (vec![], None));
    }

    #[test]
    fn before_reads_backward_oldest_first() {
        let h = filled(4, 6);
        assert_eq!(seqs(&h.before(Seq(100), 2)), vec![5, 6]);
        assert_eq!(seqs(&h.before(Seq(6), 10)), vec![3, 4, 5]);
        assert_eq!(seqs(&h.before(Seq(4), 1)), vec![3]);
        assert!(h.before(Seq(3), 10).is_empty());
        assert!(h.before(Seq(1), 10).is_empty());
    }

    #[test]
    fn idempotency_keys_follow_the_ring() {
        let mut h = History::new(2);
        let ada = UserName::parse("ada", 8).unwrap();
        let key = IdempotencyKey::parse("k1").unwrap();
        h.push(msg(1, Some("k1")));
        assert_eq!(h.find_key(&ada, &key).map(|m| m.seq), Some(Seq(1)));
        assert_eq!(h.find_key(&UserName::parse("bob", 8).unwrap(), &key), None);
        h.push(msg(2, None));
        h.push(msg(3, None));
        assert_eq!(h.find_key(&ada, &key), None);
        assert_eq!(h.key_count(), 0);
    }
}
