//! The shared log on Redis: rooms shared by several nodes (`--redis URL`).
//!
//! Redis numbers each room's messages in one place: the `append` script checks the poster's
//! idempotency key, increments the room's counter, `XADD`s the message to the room's stream
//! with the explicit ID `<seq>-0` (trimmed to about `--redis-history` entries), `PUBLISH`es it
//! with its sequence number and the room's epoch, and remembers the key. Every key of a room
//! shares one hash tag (`rc:{room}`), so the scripts also run on Redis Cluster.
//!
//! Nodes learn of messages through pub/sub on the rooms they serve. Pub/sub may lose messages;
//! core sees every loss as a hole in the sequence and asks for a read (`XRANGE` after what it
//! applied), so a loss is repaired, never silent. The safety nets where Centrifugo and
//! Socket.IO lost messages: every room is read again after the pub/sub connection reconnects
//! and every few seconds while quiet, and a probe published to this node's own channel every
//! second shows that pub/sub still delivers; when it does not, the connection is replaced and
//! `/healthz` says so meanwhile.
//!
//! All Redis I/O runs on one thread with smol's executor (the `redis` crate's `smol-comp`),
//! whichever host runs: the hub sends [`Job`]s and receives [`Outcome`]s on channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

mod keys;
mod link;
mod node;
mod older;
mod presence;
mod pubsub;
mod reply;
mod rooms;
mod scripts;

use roomcast_core::log::{Committed, Draft};
use roomcast_core::{
    Access, Event, Message, MessageId, RoomId, Seq, StoredRoom, Timestamp, UserId,
};
use roomcast_store::Progress;

pub(crate) use keys::IDENTITY_EVENTS;
pub(crate) use link::Target;
use node::Node;
pub(crate) use older::RedisOlder;
pub(crate) use scripts::{ALLOW, gcra};

/// How long an idempotency key is remembered by the log.
const IDEMPOTENCY_TTL_SECS: u64 = 3600;
/// How long a deleted room's tombstone says "deleted" rather than "lost": long enough for every
/// node that held the room to read it (they read every room they hold every few seconds), short
/// enough that deleting rooms, whose creation is paced, cannot fill Redis.
const TOMBSTONE_TTL_SECS: u64 = 600;
/// Entries per read.
const READ_PAGE: usize = 512;
/// Message ids each node takes at a time (unless `--redis-id-block` says otherwise).
pub const ID_BLOCK: u64 = 1 << 24;
/// How often the probe is published, and how long pub/sub may stay silent before it is
/// considered wedged.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_DEADLINE: Duration = Duration::from_secs(4);

/// How this node reaches Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://` or `rediss://`, with a password if needed.
    pub url: String,
    /// This node's name (logs, metrics, `/healthz`, its probe channel).
    pub node_id: String,
    /// Entries each room's stream keeps (approximately).
    pub history: usize,
    /// `url` names a Redis Cluster's seed nodes (comma-separated).
    pub cluster: bool,
    /// Each poster's rate, held across nodes (core's own bucket is per node).
    pub rate: Option<roomcast_core::Rate>,
    /// Message ids taken at a time ([`ID_BLOCK`]; smaller only in tests, to reach a block's
    /// end).
    pub id_block: u64,
}

/// What the hub asks of the log.
#[derive(Debug)]
pub(crate) enum Job {
    /// Number and store a message.
    Append(Draft),
    /// Read a room's entries after `after`.
    Fetch { room: RoomId, after: Seq },
    /// Read a room to serve it here (`history_len` newest messages).
    Load { room: RoomId, history_len: usize },
    /// Read a held room's access (members, roles, bans, mutes; none of its messages) and then
    /// its entries after `after`, both made after this was asked, and then say so
    /// ([`Outcome::CaughtUp`]).
    CatchUp { room: RoomId, after: Seq },
    /// Restore a room whose history Redis lost, under a new epoch.
    Recreate {
        room: RoomId,
        access: Access,
        created_at: Timestamp,
    },
    /// Take another block of message ids.
    ReserveIds,
    /// Count every room in Redis's index.
    CountRooms,
    /// Stop following a room (unloaded here).
    Unsubscribe(RoomId),
    /// The log went back on a room in `epoch`: start a new one (unless another node has).
    NewEpoch { room: RoomId, epoch: u64 },
    /// A page of the rooms in Redis's index that `user` may see, after `after`.
    ListRooms {
        user: UserId,
        after: Option<String>,
        limit: usize,
        policy: roomcast_core::Policy,
        /// Names the asker for the hub (it keeps whom to answer).
        ticket: u64,
    },
    /// Read messages older than a node's ring from the room's stream.
    Older {
        room: RoomId,
        read: OlderRead,
        reply: async_channel::Sender<Result<Vec<Arc<Message>>, String>>,
    },
    /// A user's first listener on a room opened on this node, or their last here closed.
    Here {
        room: RoomId,
        user: UserId,
        here: bool,
    },
    /// A user is typing in a room: announced on its channel to every node.
    Typing { room: RoomId, user: UserId },
    /// This node stops: its users leave every room (as the others would reap them).
    Leave(std::sync::mpsc::Sender<()>),
    /// A guest departed (told to this node alone): their empty rooms and their read markers
    /// go, wherever in the cluster they are (core did the same for the rooms held here).
    Depart(UserId),
}

/// A room as Redis has it: enough to serve it here, and who is present on any node.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) stored: StoredRoom,
    pub(crate) present: Vec<UserId>,
}

/// Which older messages to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OlderRead {
    /// Up to `limit` after `after` and before `below`.
    After {
        after: Seq,
        below: Seq,
        limit: usize,
    },
    /// Up to `limit` before `before`.
    Before { before: Seq, limit: usize },
    /// The oldest one.
    First,
}

/// Why an append failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppendError {
    /// The room is not in the log (deleted on another node, or lost).
    RoomGone,
    /// The same key was used for a different text; the original has this number.
    Conflict(roomcast_core::IdempotencyKey, Seq),
    /// The room's counter was behind its stream (its state went back): Redis repaired it under
    /// a new epoch; nothing was posted, and a retry will be.
    Repaired,
    /// The poster is over their rate on the cluster; retry after this long.
    RateLimited(Duration),
    /// The room's log says the poster may not: banned, or muted (a moderation this node had
    /// not applied yet). Nothing was appended.
    Standing(roomcast_core::Error),
    /// Redis could not be reached or answered an error.
    Unavailable(String),
}

/// What the log tells the hub.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An append's result: the message as committed, and whether it was a retry.
    Appended {
        id: MessageId,
        room: RoomId,
        result: Result<(Committed, Arc<Message>, bool), AppendError>,
    },
    /// Entries for a room (pub/sub, or a read).
    Committed(Committed),
    /// A [`Job::CatchUp`] is done: what it read was told before this.
    CaughtUp(RoomId),
    /// A room read for loading: `None` if Redis does not have it.
    Loaded {
        room: RoomId,
        stored: Result<Option<Loaded>, String>,
    },
    /// A room this node serves is no longer in Redis. `deleted`: another node deleted it (a
    /// tombstone says so); otherwise Redis lost it, and the hub recreates it.
    Missing { room: RoomId, deleted: bool },
    /// Another node changed who may see this room.
    AccessChanged(RoomId),
    /// A page of rooms for whoever asked (`ticket`).
    Listed {
        ticket: u64,
        page: Result<roomcast_core::RoomPage, String>,
    },
    /// The room's log has a new epoch: read it.
    EpochChanged(RoomId),
    /// Pub/sub (re)connected: every room must be read again.
    Resubscribed,
    /// A new block of message ids starts here.
    Ids(MessageId),
    /// How many rooms Redis's index holds.
    Rooms(usize),
    /// Another node revoked a session or registered a name.
    Identity(IdentityEvent),
}

/// What identity's scripts publish on [`IDENTITY_EVENTS`] (`hub/src/directory.rs`), read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdentityEvent {
    /// `revoked <sid>`: a session ended.
    Revoked(String),
    /// `registered <name's key> <id>`: a name is taken for good.
    Registered { key: String, id: UserId },
}

impl IdentityEvent {
    /// The event `payload` says, or why it says none.
    pub(crate) fn parse(payload: &str) -> Result<Self, String> {
        match payload.split_once(' ') {
            Some(("revoked", sid)) => Ok(IdentityEvent::Revoked(sid.to_owned())),
            Some(("registered", account)) => {
                let (key, id) = account
                    .split_once(' ')
                    .ok_or_else(|| "a registration without an id".to_owned())?;
                let id = UserId::parse(id, usize::MAX)
                    .map_err(|e| format!("a registration of an invalid id: {e}"))?;
                Ok(IdentityEvent::Registered {
                    key: key.to_owned(),
                    id,
                })
            }
            Some(_) | None => Err("an unknown identity event".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_events_are_read_or_refused_by_name() {
        assert_eq!(
            IdentityEvent::parse("revoked s1"),
            Ok(IdentityEvent::Revoked("s1".into()))
        );
        let id = UserId::parse("ada~uabc", usize::MAX).expect("an id");
        assert_eq!(
            IdentityEvent::parse("registered ada ada~uabc"),
            Ok(IdentityEvent::Registered {
                key: "ada".into(),
                id
            })
        );
        for bad in ["registered ada", "registered ada ~", "joined x", "revoked"] {
            assert!(IdentityEvent::parse(bad).is_err(), "{bad}");
        }
    }
}

/// The log's health, for `/healthz`.
#[derive(Debug, Default)]
pub struct LogHealth {
    /// Pub/sub delivered the last probe in time.
    pub pubsub_ok: AtomicBool,
    /// Probes that did not come back in time (each replaced the connection).
    pub wedged: AtomicU64,
}

/// The hub's handle on the log thread.
pub(crate) struct RedisLog {
    pub(crate) jobs: async_channel::Sender<Job>,
    pub(crate) outcomes: async_channel::Receiver<Outcome>,
    pub(crate) progress: async_channel::Receiver<Progress>,
    writes: async_channel::Sender<Vec<Event>>,
    pub(crate) health: Arc<LogHealth>,
    pub(crate) first_ids: MessageId,
    /// Message ids taken at a time: the next block is asked for halfway through one.
    pub(crate) id_block: u64,
}

impl RedisLog {
    /// Hands room changes to the log's writer; its progress says when they are stored.
    pub(crate) fn write(&self, events: Vec<Event>) -> Result<(), ()> {
        self.writes.try_send(events).map_err(|_| ())
    }

    /// Stops taking work.
    pub(crate) fn close(&self) {
        self.jobs.close();
        self.writes.close();
    }
}

/// How often a node says it lives, and how long a silent one is given before the others reap
/// its users' presence (within the 10 s the design promises).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const DEAD_AFTER: Duration = Duration::from_secs(7);

/// Ids read from the index per listing at most (private rooms the asker may not see are
/// skipped; a page that ends early says where to go on).
const LIST_BATCH: usize = 1000;

/// Starts the log thread: connects (failing here if Redis cannot be reached), takes the
/// first block of message ids, and serves jobs until the hub closes it.
pub(crate) fn start(mut options: RedisOptions) -> Result<RedisLog, String> {
    let target = Target::parse(&options.url, options.cluster)?;
    options.id_block = options.id_block.max(2);
    let id_block = options.id_block;
    let (jobs, job_rx) = async_channel::unbounded::<Job>();
    let (outcome_tx, outcomes) = async_channel::unbounded();
    let (progress_tx, progress) = async_channel::unbounded();
    let (writes, write_rx) = async_channel::unbounded();
    let health = Arc::new(LogHealth::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_health = health.clone();
    std::thread::Builder::new()
        .name("roomcast-redis".into())
        .spawn(move || {
            let ex = smol::Executor::new();
            smol::block_on(ex.run(async {
                let node = match Node::connect(target, options, outcome_tx, thread_health).await {
                    Ok((node, first)) => {
                        let _ = ready_tx.send(Ok(first));
                        node
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let node = Arc::new(node);
                ex.spawn(node.clone().write_loop(write_rx, progress_tx))
                    .detach();
                ex.spawn(node.clone().watch_pubsub()).detach();
                ex.spawn(node.clone().heartbeat()).detach();
                while let Ok(job) = job_rx.recv().await {
                    // In order with the loads that subscribe again, so a room unloaded and
                    // loaded at once stays followed.
                    if matches!(job, Job::Unsubscribe(_)) {
                        node.clone().run(job).await;
                    } else {
                        ex.spawn(node.clone().run(job)).detach();
                    }
                }
            }));
        })
        .map_err(|e| e.to_string())?;
    let first_ids = ready_rx
        .recv()
        .map_err(|_| "the Redis thread ended".to_owned())??;
    Ok(RedisLog {
        jobs,
        outcomes,
        progress,
        writes,
        health,
        first_ids,
        id_block,
    })
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
