//! A room's history: a bounded ring of its newest messages, readable by sequence range, plus the
//! idempotency keys of the messages it still holds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ids::{IdempotencyKey, Seq, UserId};
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

/// A room's newest entries. Edits, deletions, reactions and moderations are entries too, but
/// they do not cost messages their place: the ring keeps the room's newest `capacity` messages
/// (posts), and beside them its newest entries of every kind, as long as that run holds no
/// more than `capacity` of either. A resume reads that run ([`History::first_held`] on); a
/// page reads the messages too, each as it now is (the changes to it already made), so a
/// flood of reactions or edits pushes no message out of memory.
#[derive(Debug, Clone)]
pub(crate) struct History {
    capacity: usize,
    /// Messages older than `recent`'s first entry, oldest first: their changes are not held.
    older: VecDeque<Arc<Message>>,
    /// Every entry from the first held on to `latest`, oldest first.
    recent: VecDeque<Arc<Message>>,
    /// How many of `recent` are messages (posts); the rest are changes.
    recent_posts: usize,
    latest: Seq,
    /// Idempotency keys of held entries, forgotten when their entry leaves.
    keys: BTreeMap<(UserId, IdempotencyKey), Seq>,
}

/// Whether an entry is a message (a post) rather than a change to one or a moderation.
fn is_post(m: &Message) -> bool {
    matches!(m.kind, Kind::Post { .. })
}

impl History {
    /// An empty history keeping at most `capacity` (at least one) messages.
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            older: VecDeque::new(),
            recent: VecDeque::new(),
            recent_posts: 0,
            latest: Seq::ZERO,
            keys: BTreeMap::new(),
        }
    }

    /// A history rebuilt from storage: `latest` continues the room's numbering, and the
    /// contiguous run of `recent` that ends at `latest` is held again (as much of it as the
    /// ring keeps), with its idempotency keys.
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

    /// How many entries it holds.
    pub(crate) fn len(&self) -> usize {
        self.older.len() + self.recent.len()
    }

    /// The newest sequence number ever assigned; `Seq::ZERO` before the first message.
    pub(crate) fn latest(&self) -> Seq {
        self.latest
    }

    /// From where every entry is held (`latest + 1` when none is): a resume after anything
    /// older is told of a gap here (storage fills it).
    pub(crate) fn first_held(&self) -> Seq {
        self.recent.front().map_or(self.latest.next(), |m| m.seq)
    }

    /// The oldest entry held at all (a message, perhaps older than [`History::first_held`]).
    pub(crate) fn oldest_held(&self) -> Seq {
        self.older
            .front()
            .map_or_else(|| self.first_held(), |m| m.seq)
    }

    /// Appends the next entry, then lets the oldest go: changes beyond the ring's share, and
    /// messages beyond its capacity. `message.seq` must be `latest + 1`; core assigns it so.
    pub(crate) fn push(&mut self, message: Arc<Message>) {
        debug_assert_eq!(
            message.seq,
            self.latest.next(),
            "sequence numbers are contiguous"
        );
        if let Some(key) = &message.idempotency_key {
            self.keys
                .insert((message.user.clone(), key.clone()), message.seq);
        }
        self.recent_posts += usize::from(is_post(&message));
        self.latest = message.seq;
        self.recent.push_back(message);
        while self.recent_posts > self.capacity
            || self.recent.len() - self.recent_posts > self.capacity
        {
            let Some(first) = self.recent.pop_front() else {
                break;
            };
            if is_post(&first) {
                self.recent_posts -= 1;
                self.older.push_back(first);
            } else {
                self.forget_key(&first);
            }
        }
        while self.older.len() + self.recent_posts > self.capacity {
            let Some(oldest) = self.older.pop_front() else {
                break;
            };
            self.forget_key(&oldest);
        }
    }

    fn forget_key(&mut self, m: &Message) {
        if let Some(key) = &m.idempotency_key {
            self.keys.remove(&(m.user.clone(), key.clone()));
        }
    }

    /// Forgets everything held and continues the numbering after `latest`: the log no longer
    /// holds what came between (a trimmed shared log), or its history was lost (`Seq::ZERO`).
    pub(crate) fn skip_to(&mut self, latest: Seq) {
        *self = History::new(self.capacity);
        self.latest = latest;
    }

    /// Where the held entry `seq` is: `(true, i)` in `recent`, `(false, i)` in `older`.
    fn locate(&self, seq: Seq) -> Option<(bool, usize)> {
        let first = self.first_held();
        if seq >= first {
            let index = usize::try_from(seq.0 - first.0).ok()?;
            return (index < self.recent.len()).then_some((true, index));
        }
        self.older
            .binary_search_by_key(&seq, |m| m.seq)
            .ok()
            .map(|i| (false, i))
    }

    /// The held entry with this sequence number.
    pub(crate) fn get(&self, seq: Seq) -> Option<&Arc<Message>> {
        match self.locate(seq)? {
            (true, i) => self.recent.get(i),
            (false, i) => self.older.get(i),
        }
    }

    /// Puts `message` in the place of the held entry with its sequence number (a change made
    /// it); false if that entry is not held.
    pub(crate) fn replace(&mut self, message: Arc<Message>) -> bool {
        let slot = match self.locate(message.seq) {
            Some((true, i)) => self.recent.get_mut(i),
            Some((false, i)) => self.older.get_mut(i),
            None => None,
        };
        match slot {
            Some(slot) => {
                *slot = message;
                true
            }
            None => false,
        }
    }

    /// Takes the text out of every held edit of message `of` (which was deleted).
    pub(crate) fn wipe_edits_of(&mut self, of: Seq) {
        for slot in &mut self.recent {
            if matches!(slot.kind, Kind::Edit { of: o } if o == of) && !slot.state.deleted {
                let mut wiped = Message::clone(slot);
                wiped.text.clear();
                wiped.state.deleted = true;
                *slot = Arc::new(wiped);
            }
        }
    }

    /// The held entry `user` posted with `key`, if still held.
    pub(crate) fn find_key(&self, user: &UserId, key: &IdempotencyKey) -> Option<&Arc<Message>> {
        let seq = self.keys.get(&(user.clone(), key.clone()))?;
        self.get(*seq)
    }

    /// Up to `limit` entries after `after`, oldest first, and the gap if some of them are not
    /// held (every entry from [`History::first_held`] on is). `after` must not be past
    /// `latest`.
    pub(crate) fn after(&self, after: Seq, limit: usize) -> (Vec<Arc<Message>>, Option<Gap>) {
        let first_held = self.first_held();
        let gap = (after.next() < first_held).then_some(Gap { after, first_held });
        let start = after.next().max(first_held);
        let skip = usize::try_from(start.0 - first_held.0).unwrap_or(usize::MAX);
        (
            self.recent.iter().skip(skip).take(limit).cloned().collect(),
            gap,
        )
    }

    /// Up to `limit` of the newest entries held before `before` (messages only, older than
    /// [`History::first_held`]), oldest first.
    pub(crate) fn before(&self, before: Seq, limit: usize) -> Vec<Arc<Message>> {
        let mut page: Vec<Arc<Message>> = self
            .iter()
            .rev()
            .filter(|m| m.seq < before)
            .take(limit)
            .cloned()
            .collect();
        page.reverse();
        page
    }

    /// Iterates over the held entries, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Message>> {
        self.older.iter().chain(self.recent.iter())
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
            user: UserId::parse("ada", 8).unwrap(),
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
        let ada = UserId::parse("ada", 8).unwrap();
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

    fn change(seq: u64, of: u64) -> Arc<Message> {
        Arc::new(Message {
            kind: Kind::Edit { of: Seq(of) },
            ..Message::clone(&msg(seq, None))
        })
    }

    #[test]
    fn changes_do_not_push_messages_out() {
        let mut h = History::new(3);
        for s in 1..=3 {
            h.push(msg(s, None));
        }
        for s in 4..=20 {
            h.push(change(s, 1));
        }
        assert_eq!(
            h.iter()
                .filter(|m| is_post(m))
                .map(|m| m.seq.0)
                .collect::<Vec<_>>(),
            [1, 2, 3],
            "every message stays"
        );
        assert_eq!(h.first_held(), Seq(18), "the newest three changes in a run");
        assert_eq!(h.len(), 6);
        assert_eq!(seqs(&h.before(Seq(100), 10)), [1, 2, 3, 18, 19, 20]);
        assert_eq!(h.get(Seq(2)).map(|m| m.seq), Some(Seq(2)));
        assert_eq!(h.get(Seq(10)), None);
        let (ms, gap) = h.after(Seq(3), 10);
        assert_eq!(seqs(&ms), [18, 19, 20]);
        assert_eq!(
            gap,
            Some(Gap {
                after: Seq(3),
                first_held: Seq(18)
            }),
            "a resume from before the run is told (storage fills it)"
        );
        // New messages push the oldest out, as ever.
        h.push(msg(21, None));
        h.push(msg(22, None));
        assert_eq!(
            h.iter()
                .filter(|m| is_post(m))
                .map(|m| m.seq.0)
                .collect::<Vec<_>>(),
            [3, 21, 22]
        );
        assert_eq!(h.oldest_held(), Seq(3));
    }

    #[test]
    fn idempotency_keys_follow_the_ring() {
        let mut h = History::new(2);
        let ada = UserId::parse("ada", 8).unwrap();
        let key = IdempotencyKey::parse("k1").unwrap();
        h.push(msg(1, Some("k1")));
        assert_eq!(h.find_key(&ada, &key).map(|m| m.seq), Some(Seq(1)));
        assert_eq!(h.find_key(&UserId::parse("bob", 8).unwrap(), &key), None);
        h.push(msg(2, None));
        h.push(msg(3, None));
        assert_eq!(h.find_key(&ada, &key), None);
        assert_eq!(h.key_count(), 0);
    }
}
