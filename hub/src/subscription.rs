//! [`Subscription`]: one listener's ordered stream, with resync when it falls behind.

use std::collections::VecDeque;

use async_broadcast::{Receiver, RecvError, TryRecvError};
use roomcast_core::{CloseReason, Gap, ListenerId, OpenListener, Opened, Resume, RoomId, Seq};
use roomcast_identity::{Ending, SessionEnd};

use crate::delivery::{Broadcast, Delivery};
use crate::history::{CATCH_UP_CHUNK, fill_gap};
use crate::hub::{Hub, HubError, ListenerGuard, Opening};
use crate::shared::Wire;

/// One message delivery in this many is timed (`roomcast_delivery_seconds`).
const DELIVERY_SAMPLE: u64 = 64;

/// What a subscription still has to hand out before reading live deliveries.
enum Pending {
    Ready(Delivery),
    /// Messages the ring no longer holds, to read from the store a chunk at a time.
    Older(Gap),
}

/// A listener on a room. Yields a presence snapshot, what it missed (from the store where the
/// ring no longer holds it, or a gap notice for what is gone), the backlog, then live deliveries:
/// no gap that is not announced, no duplicate.
///
/// If the room's buffer overflows before this listener reads (a slow client), it reopens itself
/// after the last message it delivered: the missed messages come from history, or as a gap if
/// history no longer holds them. The room never waits for it. Dropping it closes the listener.
pub struct Subscription {
    hub: Hub,
    user: String,
    room: RoomId,
    /// Closes the current listener when the subscription is dropped.
    guard: ListenerGuard,
    receiver: Receiver<Broadcast>,
    pending: VecDeque<Pending>,
    /// The newest sequence number handed out (or the room's latest at open, for live listeners).
    last: Seq,
    /// [`Subscription::try_next`] found the listener overflowed; [`Subscription::next`] resyncs.
    lagged: bool,
    done: bool,
    /// The session the stream was opened with: when it ends, so does the stream.
    session: SessionEnd,
    deliveries: metrics::Counter,
    /// Messages delivered, to time one in [`DELIVERY_SAMPLE`].
    sampled: u64,
    resyncs: metrics::Counter,
    gaps: metrics::Counter,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("room", &self.room)
            .field("listener", &self.guard.listener)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Opens a listener as `open` says and streams it. `wire` labels its metrics.
    pub async fn open(hub: &Hub, open: OpenListener, wire: Wire) -> Result<Subscription, HubError> {
        let user = open.user.clone();
        let Opening {
            opened,
            receiver,
            guard,
        } = hub.open(open).await?;
        let transport = wire.label();
        let mut subscription = Subscription {
            hub: hub.clone(),
            user,
            room: opened.room.clone(),
            guard,
            receiver,
            pending: VecDeque::new(),
            last: Seq::ZERO,
            lagged: false,
            done: false,
            session: SessionEnd::never(),
            deliveries: metrics::counter!("roomcast_deliveries_total", "transport" => transport),
            sampled: 0,
            resyncs: metrics::counter!("roomcast_resyncs_total", "transport" => transport),
            gaps: metrics::counter!("roomcast_gaps_total", "transport" => transport),
        };
        subscription.load(opened);
        Ok(subscription)
    }

    /// Ends the stream with [`CloseReason::SignedOut`] or [`CloseReason::SessionExpired`] when
    /// `session` ends.
    pub fn until_signed_out(mut self, session: SessionEnd) -> Self {
        self.session = session;
        self
    }

    /// The room listened to.
    pub fn room(&self) -> &RoomId {
        &self.room
    }

    /// The core's id for the current listener (it changes on resync).
    pub fn listener(&self) -> ListenerId {
        self.guard.listener
    }

    /// The newest sequence number delivered so far.
    pub fn last_seq(&self) -> Seq {
        self.last
    }

    /// The next delivery; `None` once the stream has ended (after [`Delivery::Closed`]).
    ///
    /// Cancel-safe: dropping the future loses nothing, so it can race a timer.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.try_next() {
                return Some(delivery);
            }
            // What `try_next` leaves for waiting. A history read stays queued, and `lagged`
            // stays set, until done, in case this future is dropped.
            if let Some(Pending::Older(gap)) = self.pending.front() {
                let gap = *gap;
                self.catch_up(gap).await;
                continue;
            }
            if self.done {
                return None;
            }
            if self.lagged {
                self.resync().await;
                continue;
            }
            let (receiver, session) = (&mut self.receiver, &mut self.session);
            let received =
                futures_lite::future::or(async { Some(receiver.recv_direct().await) }, async {
                    session.wait().await;
                    None
                });
            // The session ended: `try_next` says so.
            let Some(received) = received.await else {
                continue;
            };
            match received {
                Ok(delivery) => {
                    if let Some(delivery) = self.received(delivery) {
                        return Some(delivery);
                    }
                }
                Err(RecvError::Overflowed(_)) => self.lagged = true,
                Err(RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    /// The next delivery if one is ready now, without waiting; `None` when [`next`] would wait
    /// (or the stream has ended). Lets a writer gather everything pending into one write.
    ///
    /// [`next`]: Subscription::next
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            // Nothing more for a session that has ended, not even what was queued.
            if !self.done
                && let Some(ending) = self.session.ended()
            {
                self.pending.clear();
                let reason = match ending {
                    Ending::SignedOut => CloseReason::SignedOut,
                    Ending::Expired => CloseReason::SessionExpired,
                };
                return Some(self.deliver(Delivery::Closed(reason)));
            }
            match self.pending.front() {
                Some(Pending::Ready(_)) => {
                    if let Some(Pending::Ready(delivery)) = self.pending.pop_front() {
                        return Some(self.deliver(delivery));
                    }
                }
                // Reading history waits on the store: leave it to `next`.
                Some(Pending::Older(_)) => return None,
                None => {}
            }
            // After an overflow the old receiver skips ahead: only a resync may follow.
            if self.done || self.lagged {
                return None;
            }
            match self.receiver.try_recv() {
                Ok(delivery) => {
                    if let Some(delivery) = self.received(delivery) {
                        return Some(delivery);
                    }
                }
                // The resync waits on the hub: `next` does it.
                Err(TryRecvError::Overflowed(_)) => {
                    self.lagged = true;
                    return None;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
    }

    /// What the room's broadcast means for this listener: a delivery for the room, or the end
    /// of a listener's stream, which is this one's only if it names it.
    fn received(&mut self, broadcast: Broadcast) -> Option<Delivery> {
        match broadcast {
            Broadcast::Room(delivery) => Some(self.deliver(delivery)),
            Broadcast::Listener(listener, reason) if listener == self.guard.listener => {
                Some(self.deliver(Delivery::Closed(reason)))
            }
            Broadcast::Listener(..) => None,
        }
    }

    fn load(&mut self, opened: Opened) {
        self.last = opened.latest;
        self.pending
            .push_back(Pending::Ready(Delivery::Presence(opened.presence)));
        if let Some(gap) = opened.gap {
            self.pending.push_back(match self.hub.older() {
                Some(_) => Pending::Older(gap),
                None => Pending::Ready(Delivery::Gap(gap)),
            });
        }
        self.pending.extend(
            opened
                .backlog
                .into_iter()
                .map(|m| Pending::Ready(Delivery::Message(m.into()))),
        );
    }

    /// Reads the next chunk of `gap` (at the front of the queue) from the store and replaces it
    /// with a gap notice for what the store no longer has, the messages, and the rest of the gap.
    async fn catch_up(&mut self, gap: Gap) {
        let Some(store) = self.hub.older().cloned() else {
            self.pending.pop_front();
            self.pending.push_front(Pending::Ready(Delivery::Gap(gap)));
            return;
        };
        let room = self.room.clone();
        let read =
            blocking::unblock(move || fill_gap(store.as_ref(), &room, gap, CATCH_UP_CHUNK)).await;
        let (older, missing) = read.unwrap_or_else(|e| {
            tracing::error!(error = %e, room = %self.room, "reading older history failed; sending a gap");
            (Vec::new(), Some(gap))
        });
        let mut front = Vec::with_capacity(older.len() + 2);
        front.extend(missing.map(|g| Pending::Ready(Delivery::Gap(g))));
        let last = older.last().map(|m| m.seq);
        let full = older.len() == CATCH_UP_CHUNK;
        front.extend(
            older
                .into_iter()
                .map(|m| Pending::Ready(Delivery::Message(m.into()))),
        );
        if let Some(last) = last.filter(|last| full && last.next() < gap.first_held) {
            front.push(Pending::Older(Gap {
                after: last,
                first_held: gap.first_held,
            }));
        }
        self.pending.pop_front();
        for pending in front.into_iter().rev() {
            self.pending.push_front(pending);
        }
    }

    fn deliver(&mut self, delivery: Delivery) -> Delivery {
        match &delivery {
            Delivery::Message(m) => {
                self.last = m.seq;
                self.sampled = self.sampled.wrapping_add(1);
                if self.sampled.is_multiple_of(DELIVERY_SAMPLE) {
                    let waited = crate::hub::now().saturating_since(m.sent_at);
                    metrics::histogram!("roomcast_delivery_seconds").record(waited.as_secs_f64());
                }
            }
            Delivery::Gap(_) => self.gaps.increment(1),
            Delivery::Closed(_) => self.done = true,
            Delivery::Presence(_)
            | Delivery::Joined(_)
            | Delivery::Left(_)
            | Delivery::Typing(_) => {}
        }
        self.deliveries.increment(1);
        delivery
    }

    /// Replaces the listener with one that resumes after the last delivered message (core
    /// closes the old one in the same step). If this is dropped half-way, `lagged` stays set and
    /// the next call does it again.
    async fn resync(&mut self) {
        self.resyncs.increment(1);
        let reopen = OpenListener {
            user: self.user.clone(),
            room: self.room.to_string(),
            resume: Resume::After(self.last),
            create_if_missing: false,
            replacing: Some(self.guard.listener),
        };
        let reopened = self.hub.open(reopen).await;
        self.lagged = false;
        match reopened {
            Ok(Opening {
                opened,
                receiver,
                guard,
            }) => {
                // Core closed the old listener; its guard's second close is a no-op.
                self.guard = guard;
                self.receiver = receiver;
                self.load(opened);
            }
            Err(HubError::Refused(refused)) => {
                let reason = CloseReason::of_refused_reopen(refused);
                self.pending
                    .push_back(Pending::Ready(Delivery::Closed(reason)));
            }
            // Either way the client reconnects, to this node or another.
            Err(
                HubError::Stopped
                | HubError::Unavailable(_)
                | HubError::Body(_)
                | HubError::TimedOut(_)
                | HubError::Storage(_),
            ) => self
                .pending
                .push_back(Pending::Ready(Delivery::Closed(CloseReason::ShuttingDown))),
        }
    }
}
