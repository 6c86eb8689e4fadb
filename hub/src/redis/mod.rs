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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod link;

use redis::{PushKind, Script, Value};
use roomcast_core::log::{Committed, Draft, LogRead};
use roomcast_core::{
    Access, CloseReason, Event, Message, MessageId, RoomId, Seq, StoredRoom, Timestamp, UserName,
};
use roomcast_store::Progress;

use link::Link;
pub(crate) use link::Target;

/// How long an idempotency key is remembered by the log.
const IDEMPOTENCY_TTL_SECS: u64 = 3600;
/// How long a deleted room's tombstone says "deleted" rather than "lost".
const TOMBSTONE_TTL_SECS: u64 = 86_400;
/// Entries per read.
const READ_PAGE: usize = 512;
/// Message ids each node takes at a time.
pub(crate) const ID_BLOCK: u64 = 1 << 24;
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
    /// Restore a room whose history Redis lost, under a new epoch.
    Recreate {
        room: RoomId,
        access: Access,
        created_at: Timestamp,
    },
    /// Take another block of message ids.
    ReserveIds,
    /// Stop following a room (unloaded here).
    Unsubscribe(RoomId),
    /// The log went back on a room in `epoch`: start a new one (unless another node has).
    NewEpoch { room: RoomId, epoch: u64 },
    /// A page of the rooms in Redis's index that `user` may see, after `after`.
    ListRooms {
        user: UserName,
        after: Option<String>,
        limit: usize,
        policy: roomcast_core::Policy,
        tx: async_channel::Sender<crate::hub::Answer>,
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
        user: UserName,
        here: bool,
    },
    /// This node stops: its users leave every room (as the others would reap them).
    Leave(std::sync::mpsc::Sender<()>),
}

/// A room as Redis has it: enough to serve it here, and who is present on any node.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) stored: StoredRoom,
    pub(crate) present: Vec<UserName>,
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

/// Messages older than core's ring, read from Redis's streams: blocking calls for the history
/// code (made from the blocking pool), served by the log thread.
pub(crate) struct RedisOlder {
    pub(crate) jobs: async_channel::Sender<Job>,
}

impl RedisOlder {
    fn ask(&self, room: &RoomId, read: OlderRead) -> Result<Vec<Arc<Message>>, String> {
        let (reply, answer) = async_channel::bounded(1);
        let room = room.clone();
        self.jobs
            .try_send(Job::Older { room, read, reply })
            .map_err(|_| "the Redis thread stopped".to_owned())?;
        async_io::block_on(answer.recv()).map_err(|_| "the Redis thread stopped".to_owned())?
    }
}

impl crate::history::Older for RedisOlder {
    fn after(
        &self,
        room: &RoomId,
        after: Seq,
        below: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String> {
        self.ask(
            room,
            OlderRead::After {
                after,
                below,
                limit,
            },
        )
    }

    fn before(
        &self,
        room: &RoomId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, String> {
        self.ask(room, OlderRead::Before { before, limit })
    }

    fn first_seq(&self, room: &RoomId) -> Result<Option<Seq>, String> {
        Ok(self.ask(room, OlderRead::First)?.first().map(|m| m.seq))
    }
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
    /// A page of rooms for whoever asked (`tx`).
    Listed {
        tx: async_channel::Sender<crate::hub::Answer>,
        page: Result<roomcast_core::RoomPage, String>,
    },
    /// The room's log has a new epoch: read it.
    EpochChanged(RoomId),
    /// Pub/sub (re)connected: every room must be read again.
    Resubscribed,
    /// A new block of message ids starts here.
    Ids(MessageId),
    /// Another node revoked a session or registered a name (`revoked <sid>`,
    /// `registered <name>`).
    Identity(String),
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

/// Keys of one room, all with the room's hash tag.
struct Keys {
    meta: String,
    members: String,
    log: String,
    gone: String,
    /// Who is present from which node: `<node>|<user>` → 1.
    present: String,
    /// On how many nodes each present user is: user → count.
    users: String,
    channel: String,
}

impl Keys {
    fn of(room: &str) -> Keys {
        let tag = format!("rc:{{{room}}}");
        Keys {
            members: format!("{tag}:m"),
            log: format!("{tag}:log"),
            gone: format!("{tag}:gone"),
            present: format!("{tag}:p"),
            users: format!("{tag}:pu"),
            channel: tag.clone(),
            meta: tag,
        }
    }

    fn idempotency(room: &str, user: &str, key: &str) -> String {
        format!("rc:{{{room}}}:k:{user}:{key}")
    }

    /// The room a channel belongs to.
    fn room_of(channel: &str) -> Option<&str> {
        channel.strip_prefix("rc:{")?.strip_suffix('}')
    }
}

const APPEND: &str = r"
local meta, log, idem = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HEXISTS', meta, 'c') == 0 then return {-1} end
local e = redis.call('HGET', meta, 'e')
if ARGV[5] == '1' then
  local seen = redis.call('GET', idem)
  if seen then
    local entry = redis.call('XRANGE', log, seen .. '-0', seen .. '-0')
    local body = false
    if entry[1] then body = entry[1][2][2] end
    return {tonumber(seen), e, 1, body}
  end
end
local seq = redis.call('HINCRBY', meta, 's', 1)
local added = redis.pcall('XADD', log, 'MAXLEN', '~', ARGV[2], seq .. '-0', 'm', ARGV[1])
if type(added) == 'table' and added.err then
  -- The stream is ahead of the counter: the room's state went back. Go on after the stream's
  -- newest entry, under a new epoch that every node applies as a reset.
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  local last = 0
  if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
  redis.call('HSET', meta, 's', last, 'e', ARGV[6])
  redis.call('PUBLISH', ARGV[3], 'epoch')
  return {-2}
end
redis.call('PUBLISH', ARGV[3], e .. ' ' .. seq .. ' ' .. ARGV[1])
if ARGV[5] == '1' then redis.call('SET', idem, seq, 'EX', ARGV[4]) end
return {seq, e, 0}
";

/// Allowances held across nodes, as GCRA on Redis's clock (the same as a token bucket: `burst`
/// at once, then one per interval), one key each with `interval` and `tolerance` (ms) in ARGV:
/// one is taken from every key, or from none. 0 if admitted, else the milliseconds to wait. The
/// keys of one call share a hash tag (a poster's own, `rc:{u:<user>}`, or identity's, `rc:{id}`).
pub(crate) const ALLOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, tats = 0, {}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local over = tat - tonumber(ARGV[2 * i]) - now
  if over > wait then wait = over end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  local new = tats[i] + tonumber(ARGV[2 * i - 1])
  redis.call('SET', KEYS[i], new, 'PX', new - now + 1000)
end
return 0
";

/// GCRA's `(interval, tolerance)` in milliseconds for `burst` at once, then one per `every`.
pub(crate) fn gcra(burst: u32, every: Duration) -> (u64, u64) {
    let interval = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    (interval, interval * u64::from(burst.saturating_sub(1)))
}

const READ: &str = r"
local f = redis.call('HMGET', KEYS[1], 'e', 's', 'c')
if not f[3] then return {0, 0, {}, redis.call('EXISTS', KEYS[3])} end
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
return {f[1], f[2], entries, 0, redis.call('HKEYS', KEYS[4])}
";

/// A user's presence from one node: announced on the room's channel when it changes whether
/// they are present anywhere (counted per node in `users`, as Centrifugo counts per user).
const HERE: &str = r"
if ARGV[3] == '1' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 1 and redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
    redis.call('PUBLISH', ARGV[4], 'joined ' .. ARGV[2])
  end
elseif redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[4], 'left ' .. ARGV[2])
end
return 1
";

/// Removes one node's presence from a room (it died, or stops): its users leave unless
/// present from another node.
const REAP: &str = r"
local prefix = ARGV[1] .. '|'
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], f)
    local user = string.sub(f, #prefix + 1)
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      redis.call('PUBLISH', ARGV[2], 'left ' .. user)
    end
  end
end
return 1
";

/// Nodes by their last heartbeat (milliseconds).
const NODES: &str = "rc:nodes";
/// How often a node says it lives, and how long a silent one is given before the others reap
/// its users' presence (within the 10 s the design promises).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const DEAD_AFTER: Duration = Duration::from_secs(7);

/// The rooms where a node has presence.
fn node_rooms(node: &str) -> String {
    format!("rc:node:{node}:rooms")
}

const LOAD: &str = r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
return {h, redis.call('SMEMBERS', KEYS[2]), redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[1]), redis.call('HKEYS', KEYS[4])}
";

/// Creates a room unless it exists; a new epoch unless one is set.
const CREATE: &str = r"
if redis.call('HEXISTS', KEYS[1], 'c') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'p', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[3]) end
redis.call('HSET', KEYS[1], 'e', ARGV[4], 's', 0)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
for i = 5, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return 1
";

/// A new epoch for a room whose log went back, unless one was started already; the room's
/// nodes are told to read it.
const NEW_EPOCH: &str = r"
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  redis.call('PUBLISH', ARGV[3], 'epoch')
end
return 1
";

/// Every room, by id, for listings (one key outside any room's slot).
const ROOMS: &str = "rc:rooms";
/// Ids read from the index per listing at most (private rooms the asker may not see are
/// skipped; a page that ends early says where to go on).
const LIST_BATCH: usize = 1000;

/// What a listing shows of one room.
const SUMMARY: &str = r"
local f = redis.call('HMGET', KEYS[1], 'c', 's', 'o', 'p')
if not f[1] then return 0 end
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local first_seq = 0
if first[1] then first_seq = tonumber(string.match(first[1][1], '^(%d+)')) end
return {f[1], f[2], f[3] or '', f[4], redis.call('SMEMBERS', KEYS[2]), redis.call('HLEN', KEYS[4]), first_seq}
";

/// A member added or removed, and the room's nodes told to read its access again.
const MEMBER: &str = r"
redis.call(ARGV[1], KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'access')
return 1
";

const DELETE: &str = r"
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[2], 'closed')
return 1
";

/// The scripts, loaded by hash (EVALSHA, with the script sent again on NOSCRIPT).
struct Scripts {
    summary: Script,
    new_epoch: Script,
    member: Script,
    here: Script,
    reap: Script,
    rate: Script,
    append: Script,
    read: Script,
    load: Script,
    create: Script,
    delete: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            summary: Script::new(SUMMARY),
            new_epoch: Script::new(NEW_EPOCH),
            member: Script::new(MEMBER),
            here: Script::new(HERE),
            reap: Script::new(REAP),
            rate: Script::new(ALLOW),
            append: Script::new(APPEND),
            read: Script::new(READ),
            load: Script::new(LOAD),
            create: Script::new(CREATE),
            delete: Script::new(DELETE),
        }
    }
}

/// A new epoch: greater than any made before it (milliseconds since 1970, with the process id
/// in the low bits so two nodes recreating a room in the same millisecond differ).
fn new_epoch() -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> 16)
        });
    (millis << 16) | u64::from(std::process::id() & 0xffff) | 1
}

#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "a foreign, non-exhaustive enum"
)]
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        #[allow(
            clippy::wildcard_enum_match_arm,
            reason = "a foreign, non-exhaustive enum"
        )]
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    if let Value::Int(i) = v {
        return u64::try_from(*i).ok();
    }
    text(v)?.parse().ok()
}

#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "a foreign, non-exhaustive enum"
)]
fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        #[allow(
            clippy::wildcard_enum_match_arm,
            reason = "a foreign, non-exhaustive enum"
        )]
        _ => &[],
    }
}

/// Stream entries (`[[id, [field, value]], ...]`) as messages.
fn entries(v: &Value) -> Vec<Arc<Message>> {
    array(v)
        .iter()
        .filter_map(|entry| {
            let [id, fields] = array(entry) else {
                return None;
            };
            let seq: u64 = text(id)?.split('-').next()?.parse().ok()?;
            let body = text(array(fields).get(1)?)?;
            let draft: Draft = serde_json::from_str(&body).ok()?;
            Some(Arc::new(draft.at(Seq(seq))))
        })
        .collect()
}

/// Starts the log thread: connects (failing here if Redis cannot be reached), takes the
/// first block of message ids, and serves jobs until the hub closes it.
pub(crate) fn start(options: RedisOptions) -> Result<RedisLog, String> {
    let target = Target::parse(&options.url, options.cluster)?;
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

/// The log thread's state.
struct Node {
    target: Target,
    options: RedisOptions,
    commands: Link,
    pubsub: Mutex<Link>,
    /// Channels subscribed to (the rooms this node serves).
    channels: Mutex<BTreeSet<String>>,
    outcomes: async_channel::Sender<Outcome>,
    scripts: Scripts,
    health: Arc<LogHealth>,
    /// When the last probe came back.
    probed: Mutex<Instant>,
    pushes: async_channel::Receiver<redis::PushInfo>,
    push_tx: async_channel::Sender<redis::PushInfo>,
}

impl Node {
    async fn connect(
        target: Target,
        options: RedisOptions,
        outcomes: async_channel::Sender<Outcome>,
        health: Arc<LogHealth>,
    ) -> Result<(Node, MessageId), String> {
        let url = redact(&options.url);
        let unreachable = |e: redis::RedisError| format!("cannot reach Redis at {url}: {e}");
        let mut commands = target.connect(None).await.map_err(unreachable)?;
        let (push_tx, pushes) = async_channel::unbounded();
        let pubsub = target.connect(Some(&push_tx)).await.map_err(unreachable)?;
        let end: u64 = redis::cmd("INCRBY")
            .arg("rc:ids")
            .arg(ID_BLOCK)
            .query_async(&mut commands)
            .await
            .map_err(|e| format!("cannot reserve message ids on Redis at {url}: {e}"))?;
        health.pubsub_ok.store(true, Ordering::SeqCst);
        let node = Node {
            target,
            options,
            commands,
            pubsub: Mutex::new(pubsub),
            channels: Mutex::new(BTreeSet::new()),
            outcomes,
            scripts: Scripts::new(),
            health,
            probed: Mutex::new(Instant::now()),
            pushes,
            push_tx,
        };
        node.subscribe(node.probe_channel()).await;
        node.subscribe(crate::directory::EVENTS.to_owned()).await;
        Ok((node, MessageId(end - ID_BLOCK + 1)))
    }

    fn probe_channel(&self) -> String {
        format!("rc:probe:{}", self.options.node_id)
    }

    fn tell(&self, outcome: Outcome) {
        let _ = self.outcomes.try_send(outcome);
    }

    fn conn(&self) -> Link {
        self.commands.clone()
    }

    async fn subscribe(&self, channel: String) {
        let mut pubsub = self.pubsub.lock().expect("not poisoned").clone();
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::warn!(%channel, error = %e, "subscribe failed; the room is read every few seconds");
        }
        self.channels.lock().expect("not poisoned").insert(channel);
    }

    async fn run(self: Arc<Self>, job: Job) {
        match job {
            Job::Append(draft) => {
                let (id, room) = (draft.id, draft.room.clone());
                let result = self.append(draft).await;
                self.tell(Outcome::Appended { id, room, result });
            }
            Job::Fetch { room, after } => {
                if let Some(outcome) = self.read(&room, after).await {
                    self.tell(outcome);
                }
            }
            Job::Load { room, history_len } => {
                let stored = self.load(&room, history_len).await;
                if let Ok(Some(_)) = &stored {
                    self.subscribe(Keys::of(room.as_str()).channel).await;
                }
                self.tell(Outcome::Loaded { room, stored });
            }
            Job::Recreate {
                room,
                access,
                created_at,
            } => {
                let epoch = new_epoch();
                let _ = self.create(&room, &access, created_at, epoch).await;
                let _: redis::RedisResult<Value> = redis::cmd("ZADD")
                    .arg(ROOMS)
                    .arg(0)
                    .arg(room.as_str())
                    .query_async(&mut self.conn())
                    .await;
                tracing::warn!(%room, "Redis lost this room's history; recreated it under a new epoch");
                self.tell(Outcome::Committed(Committed {
                    room,
                    epoch,
                    messages: Vec::new(),
                    read: Some(LogRead {
                        after: Seq::ZERO,
                        first_held: Seq(1),
                        latest: Seq::ZERO,
                    }),
                    gone: false,
                    access: None,
                    presence: Vec::new(),
                    present: None,
                }));
            }
            Job::Here { room, user, here } => {
                let keys = Keys::of(room.as_str());
                let node = &self.options.node_id;
                let mut conn = self.conn();
                if here {
                    let _: redis::RedisResult<Value> = redis::cmd("SADD")
                        .arg(node_rooms(node))
                        .arg(room.as_str())
                        .query_async(&mut conn)
                        .await;
                }
                let done: redis::RedisResult<Value> = self
                    .scripts
                    .here
                    .key(&keys.present)
                    .key(&keys.users)
                    .arg(format!("{node}|{user}"))
                    .arg(user.as_str())
                    .arg(if here { "1" } else { "0" })
                    .arg(&keys.channel)
                    .invoke_async(&mut conn)
                    .await;
                if let Err(e) = done {
                    tracing::warn!(%room, %user, error = %e, "presence not shared");
                }
            }
            Job::Older { room, read, reply } => {
                let log = Keys::of(room.as_str()).log;
                let cmd = match read {
                    OlderRead::After {
                        after,
                        below,
                        limit,
                    } => {
                        let mut cmd = redis::cmd("XRANGE");
                        cmd.arg(&log)
                            .arg(format!("({}-0", after.0))
                            .arg(format!("({}-0", below.0))
                            .arg("COUNT")
                            .arg(limit.max(1));
                        cmd
                    }
                    OlderRead::Before { before, limit } => {
                        let mut cmd = redis::cmd("XREVRANGE");
                        cmd.arg(&log)
                            .arg(format!("({}-0", before.0))
                            .arg("-")
                            .arg("COUNT")
                            .arg(limit.max(1));
                        cmd
                    }
                    OlderRead::First => {
                        let mut cmd = redis::cmd("XRANGE");
                        cmd.arg(&log).arg("-").arg("+").arg("COUNT").arg(1);
                        cmd
                    }
                };
                let read_back: redis::RedisResult<Value> = cmd.query_async(&mut self.conn()).await;
                let answer = read_back.map_err(|e| e.to_string()).map(|v| {
                    let mut messages = entries(&v);
                    if matches!(read, OlderRead::Before { .. }) {
                        messages.reverse();
                    }
                    messages
                });
                let _ = reply.try_send(answer);
            }
            Job::ListRooms {
                user,
                after,
                limit,
                policy,
                tx,
            } => {
                let page = self.list(&user, after.as_deref(), limit, &policy).await;
                self.tell(Outcome::Listed { tx, page });
            }
            Job::NewEpoch { room, epoch } => {
                let keys = Keys::of(room.as_str());
                let started: redis::RedisResult<Value> = self
                    .scripts
                    .new_epoch
                    .key(&keys.meta)
                    .arg(epoch)
                    .arg(new_epoch())
                    .arg(&keys.channel)
                    .invoke_async(&mut self.conn())
                    .await;
                if let Err(e) = started {
                    tracing::warn!(%room, error = %e, "cannot start a new epoch");
                }
            }
            Job::Unsubscribe(room) => {
                let channel = Keys::of(room.as_str()).channel;
                self.channels.lock().expect("not poisoned").remove(&channel);
                let mut pubsub = self.pubsub.lock().expect("not poisoned").clone();
                let _ = pubsub.unsubscribe(&channel).await;
            }
            Job::Leave(done) => {
                self.reap(&self.options.node_id).await;
                let _ = done.send(());
            }
            Job::ReserveIds => {
                let reserved: redis::RedisResult<u64> = redis::cmd("INCRBY")
                    .arg("rc:ids")
                    .arg(ID_BLOCK)
                    .query_async(&mut self.conn())
                    .await;
                match reserved {
                    Ok(end) => self.tell(Outcome::Ids(MessageId(end - ID_BLOCK + 1))),
                    Err(e) => tracing::error!(error = %e, "cannot reserve message ids"),
                }
            }
        }
    }

    /// Takes one post from the poster's allowance on the cluster.
    async fn admit(&self, user: &UserName) -> Result<(), AppendError> {
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

    async fn append(&self, draft: Draft) -> Result<(Committed, Arc<Message>, bool), AppendError> {
        self.admit(&draft.user).await?;
        let keys = Keys::of(draft.room.as_str());
        let key = draft.idempotency_key.as_ref();
        let idem = key.map_or_else(String::new, |k| {
            Keys::idempotency(draft.room.as_str(), draft.user.as_str(), k.as_str())
        });
        let body = serde_json::to_string(&draft).expect("a draft serializes");
        let reply: Value = self
            .scripts
            .append
            .key(&keys.meta)
            .key(&keys.log)
            .key(if key.is_some() { &idem } else { &keys.meta })
            .arg(&body)
            .arg(self.options.history)
            .arg(&keys.channel)
            .arg(IDEMPOTENCY_TTL_SECS)
            .arg(if key.is_some() { "1" } else { "0" })
            .arg(new_epoch())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        let fields = array(&reply);
        let bad = || AppendError::Unavailable(format!("unexpected append reply {reply:?}"));
        let seq = match fields.first() {
            Some(Value::Int(-1)) => return Err(AppendError::RoomGone),
            Some(Value::Int(-2)) => return Err(AppendError::Repaired),
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
            room: draft.room.clone(),
            epoch,
            messages: if duplicate {
                Vec::new()
            } else {
                vec![message.clone()]
            },
            read: None,
            gone: false,
            access: None,
            presence: Vec::new(),
            present: None,
        };
        Ok((committed, message, duplicate))
    }

    async fn read(&self, room: &RoomId, after: Seq) -> Option<Outcome> {
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
                .filter_map(|u| UserName::parse(&u, usize::MAX).ok())
                .collect()
        });
        Some(Outcome::Committed(Committed {
            room: room.clone(),
            epoch,
            messages,
            read: Some(LogRead {
                after,
                first_held,
                latest,
            }),
            gone: false,
            access: None,
            presence: Vec::new(),
            present,
        }))
    }

    async fn load(&self, room: &RoomId, history_len: usize) -> Result<Option<Loaded>, String> {
        let keys = Keys::of(room.as_str());
        let reply: Value = self
            .scripts
            .load
            .key(&keys.meta)
            .key(&keys.members)
            .key(&keys.log)
            .key(&keys.users)
            .arg(history_len)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| e.to_string())?;
        let parts = array(&reply);
        let [meta, members, newest, present] = parts else {
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
        let user = |s: String| UserName::parse(&s, usize::MAX).ok();
        let access = Access {
            owner: get("o").and_then(user),
            private: get("p").as_deref() == Some("1"),
            members: array(members)
                .iter()
                .filter_map(text)
                .filter_map(user)
                .collect(),
        };
        let mut recent = entries(newest);
        recent.reverse();
        let present = array(present)
            .iter()
            .filter_map(text)
            .filter_map(|u| UserName::parse(&u, usize::MAX).ok())
            .collect();
        let stored = StoredRoom {
            id: room.clone(),
            created_at: Timestamp::from_unix_millis(created),
            access,
            latest: Seq(get("s").and_then(|s| s.parse().ok()).unwrap_or(0)),
            recent,
            epoch: get("e").and_then(|e| e.parse().ok()).unwrap_or(0),
        };
        Ok(Some(Loaded { stored, present }))
    }

    async fn create(
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

    /// Persists one durable room change.
    async fn write_event(&self, event: &Event) -> redis::RedisResult<()> {
        match event {
            Event::RoomCreated {
                room,
                created_at,
                owner,
                private,
            } => {
                let access = Access {
                    owner: owner.clone(),
                    private: *private,
                    members: BTreeSet::new(),
                };
                let _: Value = redis::cmd("ZADD")
                    .arg(ROOMS)
                    .arg(0)
                    .arg(room.as_str())
                    .query_async(&mut self.conn())
                    .await?;
                if !self.create(room, &access, *created_at, new_epoch()).await? {
                    // Another node made it first: theirs stands, and this node takes its
                    // owner, privacy and members from Redis.
                    self.tell(Outcome::AccessChanged(room.clone()));
                }
                self.subscribe(Keys::of(room.as_str()).channel).await;
            }
            Event::MemberAdded { room, user } | Event::MemberRemoved { room, user } => {
                let keys = Keys::of(room.as_str());
                let change = if matches!(event, Event::MemberAdded { .. }) {
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
            Event::RoomClosed { room, reason } => match reason {
                CloseReason::Deleted { .. } | CloseReason::Expired => {
                    let keys = Keys::of(room.as_str());
                    let _: Value = self
                        .scripts
                        .delete
                        .key(&keys.meta)
                        .key(&keys.members)
                        .key(&keys.log)
                        .key(&keys.gone)
                        .arg(TOMBSTONE_TTL_SECS)
                        .arg(&keys.channel)
                        .invoke_async(&mut self.conn())
                        .await?;
                    let _: Value = redis::cmd("ZREM")
                        .arg(ROOMS)
                        .arg(room.as_str())
                        .query_async(&mut self.conn())
                        .await?;
                }
                // Not a change to the room itself.
                CloseReason::Removed
                | CloseReason::Refused(_)
                | CloseReason::ShuttingDown
                | CloseReason::Reset => {}
            },
            // Messages are in the log already; the rest is never stored.
            Event::Published(_)
            | Event::Joined { .. }
            | Event::Left { .. }
            | Event::ListenerClosed { .. }
            | Event::Gap { .. }
            | Event::Here { .. }
            | Event::Unloaded { .. }
            | Event::Diverged { .. }
            | Event::Fetch { .. } => {}
        }
        Ok(())
    }

    /// Writes room changes in the order the hub made them, reporting each batch stored.
    async fn write_loop(
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
    async fn list(
        &self,
        user: &UserName,
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
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let f = array(&reply);
            let (Some(created), Some(latest)) = (f.first().and_then(int), f.get(1).and_then(int))
            else {
                continue; // Deleted since the index was read.
            };
            let created_at = Timestamp::from_unix_millis(created);
            let user_of = |v: &Value| text(v).and_then(|u| UserName::parse(&u, usize::MAX).ok());
            let first = f.get(6).and_then(int).filter(|&s| s > 0);
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
                private: f.get(3).and_then(text).as_deref() == Some("1"),
                members: f
                    .get(4)
                    .map(array)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(user_of)
                    .collect(),
            });
        }
        let mut page = policy.list(user, rooms.into_iter(), limit);
        // The index may go on past this batch: a short page says where.
        if page.next_after.is_none() && page.rooms.len() < limit && ids.len() == LIST_BATCH {
            page.next_after = ids.last().and_then(|id| RoomId::parse(id, usize::MAX).ok());
        }
        Ok(page)
    }

    /// Removes `node`'s presence from every room it had any in.
    async fn reap(&self, node: &str) {
        let mut conn = self.conn();
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(node_rooms(node))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for room in rooms {
            let keys = Keys::of(&room);
            let _: redis::RedisResult<Value> = self
                .scripts
                .reap
                .key(&keys.present)
                .key(&keys.users)
                .arg(node)
                .arg(&keys.channel)
                .invoke_async(&mut conn)
                .await;
        }
        // Two keys in different slots of a cluster: two commands.
        let _: redis::RedisResult<Value> = redis::cmd("DEL")
            .arg(node_rooms(node))
            .query_async(&mut conn)
            .await;
        let _: redis::RedisResult<Value> = redis::cmd("ZREM")
            .arg(NODES)
            .arg(node)
            .query_async(&mut conn)
            .await;
    }

    /// Says every [`HEARTBEAT_EVERY`] that this node lives, and reaps the presence of nodes
    /// silent for [`DEAD_AFTER`] (one survivor each, by a lease).
    async fn heartbeat(self: Arc<Self>) {
        // A node restarted under the same id: what its last run left is stale.
        self.reap(&self.options.node_id).await;
        loop {
            let now = u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(u64::MAX);
            let mut conn = self.conn();
            let _: redis::RedisResult<Value> = redis::cmd("ZADD")
                .arg(NODES)
                .arg(now)
                .arg(&self.options.node_id)
                .query_async(&mut conn)
                .await;
            let dead: Vec<String> = redis::cmd("ZRANGE")
                .arg(NODES)
                .arg("-inf")
                .arg(now.saturating_sub(u64::try_from(DEAD_AFTER.as_millis()).unwrap_or(0)))
                .arg("BYSCORE")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            for node in dead {
                let lease: redis::RedisResult<Option<String>> = redis::cmd("SET")
                    .arg(format!("rc:reap:{node}"))
                    .arg(&self.options.node_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut conn)
                    .await;
                if let Ok(Some(_)) = lease {
                    tracing::warn!(%node, "a node went silent; its users leave");
                    self.reap(&node).await;
                }
            }
            smol::Timer::after(HEARTBEAT_EVERY).await;
        }
    }

    /// Turns pub/sub pushes into entries, and probes that pub/sub still delivers.
    async fn watch_pubsub(self: Arc<Self>) {
        let probe = self.clone();
        let probing = async move {
            loop {
                smol::Timer::after(PROBE_EVERY).await;
                let _: redis::RedisResult<Value> = redis::cmd("PUBLISH")
                    .arg(probe.probe_channel())
                    .arg("probe")
                    .query_async(&mut probe.conn())
                    .await;
                let silent = probe.probed.lock().expect("not poisoned").elapsed();
                if silent > PROBE_DEADLINE {
                    probe.health.pubsub_ok.store(false, Ordering::SeqCst);
                    probe.health.wedged.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(?silent, "pub/sub delivered no probe; reconnecting it");
                    probe.reconnect_pubsub().await;
                }
            }
        };
        let this = self.clone();
        let receiving = async move {
            while let Ok(push) = this.pushes.recv().await {
                this.on_push(push);
            }
        };
        futures_lite::future::or(probing, receiving).await;
    }

    async fn reconnect_pubsub(&self) {
        match self.target.connect(Some(&self.push_tx)).await {
            Ok(mut fresh) => {
                let channels: Vec<String> = self
                    .channels
                    .lock()
                    .expect("not poisoned")
                    .iter()
                    .cloned()
                    .collect();
                for channel in &channels {
                    let _ = fresh.subscribe(channel).await;
                }
                *self.pubsub.lock().expect("not poisoned") = fresh;
                *self.probed.lock().expect("not poisoned") = Instant::now();
                self.tell(Outcome::Resubscribed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot reconnect pub/sub"),
        }
    }

    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "a foreign, non-exhaustive enum"
    )]
    fn on_push(&self, push: redis::PushInfo) {
        match push.kind {
            PushKind::Message => {
                let (Some(channel), Some(payload)) = (
                    push.data.first().and_then(text),
                    push.data.get(1).and_then(text),
                ) else {
                    return;
                };
                if channel == crate::directory::EVENTS {
                    self.tell(Outcome::Identity(payload));
                    return;
                }
                if channel == self.probe_channel() {
                    *self.probed.lock().expect("not poisoned") = Instant::now();
                    self.health.pubsub_ok.store(true, Ordering::SeqCst);
                    return;
                }
                let Some(room) =
                    Keys::room_of(&channel).and_then(|r| RoomId::parse(r, usize::MAX).ok())
                else {
                    return;
                };
                if payload == "closed" {
                    self.tell(Outcome::Missing {
                        room,
                        deleted: true,
                    });
                    return;
                }
                if payload == "access" {
                    self.tell(Outcome::AccessChanged(room));
                    return;
                }
                if payload == "epoch" {
                    self.tell(Outcome::EpochChanged(room));
                    return;
                }
                let announced = match payload.split_once(' ') {
                    Some(("joined", user)) => Some((user, true)),
                    Some(("left", user)) => Some((user, false)),
                    Some(_) | None => None,
                };
                if let Some((user, present)) = announced {
                    if let Ok(user) = UserName::parse(user, usize::MAX) {
                        self.tell(Outcome::Committed(Committed {
                            presence: vec![(user, present)],
                            ..Committed::of(room, 0)
                        }));
                    }
                    return;
                }
                let mut parts = payload.splitn(3, ' ');
                let (Some(epoch), Some(seq), Some(body)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                let (Ok(epoch), Ok(seq), Ok(draft)) = (
                    epoch.parse(),
                    seq.parse(),
                    serde_json::from_str::<Draft>(body),
                ) else {
                    return;
                };
                self.tell(Outcome::Committed(Committed {
                    room,
                    epoch,
                    messages: vec![Arc::new(draft.at(Seq(seq)))],
                    read: None,
                    gone: false,
                    access: None,
                    presence: Vec::new(),
                    present: None,
                }));
            }
            PushKind::Disconnection => {
                // The manager reconnects and resubscribes; what was published meanwhile is read.
                self.tell(Outcome::Resubscribed);
            }
            #[allow(
                clippy::wildcard_enum_match_arm,
                reason = "a foreign, non-exhaustive enum"
            )]
            _ => {}
        }
    }
}
