//! Cores that replicate a shared log (`Sequencer::Shared`) against a fake log that drops,
//! duplicates, reorders, delays and trims entries and changes epochs: every replica shows the
//! room one sequence, the log's, and every number it skips is announced as a gap.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use roomcast_core::log::{Committed, LogRead, Sequencer};
use support::*;

const ROOM: &str = "lobby";
const REPLICAS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    /// The log commits the next message (it reaches nobody yet).
    Append,
    /// Pub/sub hands a replica one of the entries in flight to it, by index.
    Deliver(usize, usize),
    /// ...hands it one but keeps it in flight, so it arrives again later.
    Duplicate(usize, usize),
    /// ...loses one.
    Drop(usize, usize),
    /// The log trims to its newest `n` entries.
    Trim(usize),
    /// Time passes for a replica (its holes may ask for reads).
    Tick(usize),
    /// The log loses everything and starts a new epoch.
    Lose,
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REPLICAS;
    prop_oneof![
        6 => Just(Op::Append),
        6 => (r.clone(), 0..8usize).prop_map(|(r, i)| Op::Deliver(r, i)),
        1 => (r.clone(), 0..8usize).prop_map(|(r, i)| Op::Duplicate(r, i)),
        2 => (r.clone(), 0..8usize).prop_map(|(r, i)| Op::Drop(r, i)),
        1 => (1..6usize).prop_map(Op::Trim),
        2 => r.prop_map(Op::Tick),
        1 => Just(Op::Lose),
    ]
}

/// The fake log: the current epoch's entries (trimmed ones gone), and every entry ever made.
struct Log {
    epoch: u64,
    entries: Vec<Arc<Message>>,
    latest: Seq,
    made: BTreeMap<(u64, Seq), Arc<Message>>,
    next_id: u64,
}

impl Log {
    /// A log with nothing in it yet, in `epoch`.
    fn empty(epoch: u64) -> Log {
        Log {
            epoch,
            entries: Vec::new(),
            latest: Seq::ZERO,
            made: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn append(&mut self) -> Arc<Message> {
        self.latest = self.latest.next();
        self.next_id += 1;
        let message = Arc::new(Message {
            id: MessageId(self.next_id),
            room: RoomId::parse(ROOM, 64).unwrap(),
            seq: self.latest,
            user: UserId::parse("ada", 64).unwrap(),
            text: format!("m{}", self.next_id),
            sent_at: t(1),
            idempotency_key: None,
            kind: Default::default(),
            state: Default::default(),
        });
        self.entries.push(message.clone());
        self.made.insert((self.epoch, self.latest), message.clone());
        message
    }

    /// What a read after `after` finds (a page of at most 3, as reads are paged).
    fn read(&self, after: Seq) -> Committed {
        let messages: Vec<_> = self
            .entries
            .iter()
            .filter(|m| m.seq > after)
            .take(3)
            .cloned()
            .collect();
        let first_held = messages.first().map_or(self.latest.next(), |m| m.seq);
        Committed {
            messages,
            read: Some(LogRead {
                after,
                first_held,
                latest: self.latest,
            }),
            ..Committed::of(RoomId::parse(ROOM, 64).unwrap(), self.epoch)
        }
    }
}

/// One replica, and what it has shown its listeners.
struct Replica {
    core: Core,
    now: u64,
    /// Entries in flight to it, in any order.
    inbox: Vec<(u64, Arc<Message>)>,
    /// The epoch it was last fed, and the newest sequence number it showed in it.
    epoch: u64,
    shown: Seq,
    /// Messages its ring should hold: shown since the last gap or reset.
    ring: usize,
}

impl Replica {
    fn new(epoch: u64) -> Replica {
        let config = Config {
            sequencer: Sequencer::Shared,
            fetch_after: Duration::from_millis(50),
            ..unlimited()
        };
        let mut core = Core::new(config);
        core.restore_room(
            t(0),
            StoredRoom {
                id: RoomId::parse(ROOM, 64).unwrap(),
                created_at: t(0),
                access: Access::default(),
                latest: Seq::ZERO,
                recent: Vec::new(),
                epoch,
                posts: 0,
                read: Default::default(),
            },
        );
        Replica {
            core,
            now: 1,
            inbox: Vec::new(),
            epoch,
            shown: Seq::ZERO,
            ring: 0,
        }
    }

    /// Feeds it, then checks what it showed; serves the reads it asks for.
    fn feed(&mut self, log: &Log, committed: Committed) {
        if committed.epoch < self.epoch {
            // Stale: from before the log lost its history. Dropped, nothing shown.
            let epoch = committed.epoch;
            self.core.handle(t(self.now), committed.into()).unwrap();
            assert!(
                self.core.poll_event().is_none(),
                "a stale epoch {epoch} changed something"
            );
            return;
        }
        if committed.epoch > self.epoch {
            // A new epoch: numbering starts again (listeners were closed as reset).
            self.epoch = committed.epoch;
            self.shown = Seq::ZERO;
            self.ring = 0;
        }
        let epoch = committed.epoch;
        self.core.handle(t(self.now), committed.into()).unwrap();
        self.check(log, epoch);
    }

    /// Checks every event since the last feed, and answers its reads from the log.
    fn check(&mut self, log: &Log, epoch: u64) {
        let mut reads = Vec::new();
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Published(m) => {
                    assert_eq!(
                        m.seq,
                        self.shown.next(),
                        "shown out of order or with a silent hole"
                    );
                    assert_eq!(
                        Some(&m),
                        log.made.get(&(epoch, m.seq)),
                        "shown something the log did not commit at {}",
                        m.seq
                    );
                    self.shown = m.seq;
                    self.ring += 1;
                }
                Event::Gap { gap, .. } => {
                    assert_eq!(
                        gap.after, self.shown,
                        "a gap that does not start where shown ends"
                    );
                    assert!(gap.first_held > gap.after.next(), "an empty gap");
                    self.shown = Seq(gap.first_held.0 - 1);
                    self.ring = 0;
                }
                Event::Fetch { after, .. } => reads.push(after),
                Event::Diverged { .. } => panic!("the log never went back, yet a replica said so"),
                Event::ListenerClosed { .. }
                | Event::RoomClosed { .. }
                | Event::RoomCreated { .. }
                | Event::MemberAdded { .. }
                | Event::MemberRemoved { .. }
                | Event::Joined { .. }
                | Event::Here { .. }
                | Event::Unloaded { .. }
                | Event::Typing { .. }
                | Event::Read { .. }
                | Event::ReadForgotten { .. }
                | Event::AttachmentsDropped { .. }
                | Event::Left { .. } => {}
            }
        }
        assert_eq!(
            self.core.stats().messages_held,
            self.ring,
            "the held-message count drifted"
        );
        for after in reads {
            let page = log.read(after);
            self.feed(log, page);
        }
    }

    fn tick(&mut self, log: &Log, ms: u64) {
        self.now += ms;
        self.core.handle_timeout(t(self.now));
        let epoch = self.epoch;
        self.check(log, epoch);
    }
}

fn run(ops: Vec<Op>) {
    let mut log = Log::empty(1);
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|_| Replica::new(1)).collect();
    for op in ops {
        match op {
            Op::Append => {
                let m = log.append();
                for r in &mut replicas {
                    r.inbox.push((log.epoch, m.clone()));
                }
            }
            Op::Deliver(r, i) | Op::Duplicate(r, i) | Op::Drop(r, i) => {
                let replica = &mut replicas[r];
                if replica.inbox.is_empty() {
                    continue;
                }
                let i = i % replica.inbox.len();
                let (epoch, message) = match op {
                    Op::Duplicate(..) => replica.inbox[i].clone(),
                    Op::Deliver(..)
                    | Op::Drop(..)
                    | Op::Append
                    | Op::Trim(_)
                    | Op::Tick(_)
                    | Op::Lose => replica.inbox.remove(i),
                };
                if matches!(op, Op::Drop(..)) {
                    continue;
                }
                let room = message.room.clone();
                replica.feed(
                    &log,
                    Committed {
                        messages: vec![message],
                        ..Committed::of(room, epoch)
                    },
                );
            }
            Op::Trim(n) => {
                let excess = log.entries.len().saturating_sub(n);
                log.entries.drain(..excess);
            }
            Op::Tick(r) => replicas[r].tick(&log, 60),
            Op::Lose => {
                log.epoch += 1;
                log.entries.clear();
                log.latest = Seq::ZERO;
            }
        }
    }
    // Settle: the periodic check reads every room after what it applied; then holes fill.
    for r in &mut replicas {
        r.inbox.clear();
        let after = r.core.heads().next().map(|(_, s)| s).unwrap();
        let page = log.read(after);
        r.feed(&log, page);
        for _ in 0..4 {
            r.tick(&log, 500);
        }
        let latest = r.core.heads().next().map(|(_, s)| s).unwrap();
        assert_eq!(latest, log.latest, "a replica stayed behind the log");
        assert_eq!(
            r.shown, log.latest,
            "what was shown does not reach the log's newest"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn every_replica_shows_the_logs_one_sequence_and_announces_every_hole(
        ops in proptest::collection::vec(op(), 1..150)
    ) {
        run(ops);
    }
}

#[test]
fn an_entry_that_arrives_early_waits_for_the_one_before() {
    let mut log = Log::empty(7);
    let mut r = Replica::new(7);
    let one = log.append();
    let two = log.append();
    let committed = |m: &Arc<Message>| Committed {
        messages: vec![m.clone()],
        ..Committed::of(m.room.clone(), 7)
    };
    r.feed(&log, committed(&two));
    assert_eq!(r.shown, Seq::ZERO, "2 is held until 1 comes");
    r.feed(&log, committed(&one));
    assert_eq!(r.shown, Seq(2));
    r.feed(&log, committed(&two));
    assert_eq!(r.shown, Seq(2), "a duplicate is dropped");
}

#[test]
fn a_room_nobody_listens_to_is_unloaded_and_one_with_listeners_stays() {
    let mut r = Replica::new(1);
    let unload_after = r.core.config().unload_after.unwrap().as_millis() as u64;
    let open = OpenListener {
        user: "ada".into(),
        room: ROOM.into(),
        resume: Resume::Live,
        create_if_missing: false,
        replacing: None,
    };
    let opened = r.core.ask(t(1), open).expect("opens");
    r.core.handle_timeout(t(2 + unload_after * 2));
    assert!(r.core.holds(ROOM), "a room with a listener stays loaded");
    while r.core.poll_event().is_some() {}
    r.core
        .ask(
            t(3 + unload_after * 2),
            CloseListener {
                listener: opened.listener,
            },
        )
        .expect("closes");
    while r.core.poll_event().is_some() {}
    r.core.handle_timeout(t(3 + unload_after * 3));
    assert!(!r.core.holds(ROOM), "an idle room is unloaded");
    let events: Vec<Event> = std::iter::from_fn(|| r.core.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Unloaded {
            room: RoomId::parse(ROOM, 64).unwrap()
        }],
        "unloading deletes nothing"
    );
}

#[test]
fn a_log_that_goes_back_in_the_same_epoch_is_told_once_and_not_followed() {
    let mut log = Log::empty(5);
    let mut r = Replica::new(5);
    for _ in 0..4 {
        log.append();
    }
    let page = log.read(Seq::ZERO);
    r.feed(&log, page);
    let page = log.read(Seq(3));
    r.feed(&log, page);
    assert_eq!(r.shown, Seq(4));
    // A failover to a replica that had only two: same epoch, numbering behind, and its next
    // message takes a number this room already showed.
    log.entries.truncate(2);
    log.latest = Seq(2);
    let rewritten = log.append();
    let went_back = |r: &mut Replica, c: Committed| {
        r.core.handle(t(r.now), c.into()).unwrap();
        std::iter::from_fn(|| r.core.poll_event()).collect::<Vec<_>>()
    };
    let events = went_back(
        &mut r,
        Committed {
            messages: vec![rewritten],
            ..Committed::of(RoomId::parse(ROOM, 64).unwrap(), 5)
        },
    );
    assert_eq!(
        events,
        vec![Event::Diverged {
            room: RoomId::parse(ROOM, 64).unwrap(),
            epoch: 5
        }]
    );
    let events = went_back(&mut r, log.read(Seq(4)));
    assert!(events.is_empty(), "told once per epoch: {events:?}");
    // The host starts a new epoch over what the stream holds; the room resets and follows it
    // from the start.
    log.epoch = 6;
    for m in &log.entries {
        log.made.insert((6, m.seq), m.clone());
    }
    let page = log.read(Seq(4));
    r.feed(&log, page);
    for _ in 0..4 {
        r.tick(&log, 500);
    }
    assert_eq!((r.epoch, r.shown), (6, Seq(3)));
}

#[test]
fn a_read_that_left_before_the_newest_append_is_not_a_log_going_back() {
    let mut log = Log::empty(5);
    let mut r = Replica::new(5);
    log.append();
    log.append();
    let page = log.read(Seq::ZERO);
    r.feed(&log, page);
    assert_eq!(r.shown, Seq(2));
    // A read asked after 2 (what was applied then) finds the log's newest at 2; before its
    // answer arrives, the next append's own reply is applied.
    let stale = log.read(Seq(2));
    let third = log.append();
    let reply = Committed {
        messages: vec![third],
        ..Committed::of(RoomId::parse(ROOM, 64).unwrap(), 5)
    };
    r.feed(&log, reply);
    // Fed late: `check` fails on any `Diverged`.
    r.feed(&log, stale);
    assert_eq!(r.shown, Seq(3));
}
