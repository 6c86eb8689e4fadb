//! [`Hub`]: the thread that owns the core.
//!
//! Every request is a [`Command`], a value, run on that thread against the core with the time
//! read once for the step, so each answer is typed and requests are processed one at a time in
//! arrival order: opening a listener, its backlog and its place in the room's broadcast happen
//! in one step, which makes the handoff from backlog to live gapless. Events go out through one
//! `async_broadcast` channel per room, with overflow on: the hub never waits for a listener.
//!
//! With a store, the hub is also the durability barrier ([`Barrier`]). What each step must
//! persist goes to the store's writer as one batch; the step's outputs (deliveries, room
//! closings, the answer, a new listener's place in the broadcast) wait, in order, until that
//! batch and every earlier one is committed. So nobody is answered or shown anything a crash
//! could take back, while the core goes on with the next request and the writer commits many
//! steps at once.
//!
//! With `--record-inputs`, every input and what the core answered and emitted is written to a
//! file that [`roomcast_core::record::Replay`] replays (see [`crate::recorder`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use async_broadcast::{InactiveReceiver, Receiver, Sender};
use futures_lite::FutureExt;
use roomcast_core::log::{Committed, Sequencer};
use roomcast_core::record::Input;
use roomcast_core::{
    Ask, CloseListener, CloseReason, Command, Config, Core, Error, Event, History, HistoryPage,
    ListenerId, OpenListener, Opened, Reply, RoomEnd, RoomId, Seq, Stats, Timestamp,
};
use roomcast_core::{
    AttachmentError, Kind, Limits, MessageId, Submit, Submitted, Upload, UserId, ViewRoom,
};
use roomcast_store::{Journal, Progress, Retention, Store};
use thiserror::Error;

use crate::barrier::Barrier;
use crate::delivery::{Broadcast, Delivery};
use crate::departures::{self, Departures};
use crate::directory::RedisDirectory;
use crate::files::{Files, SaveError, Stored};
use crate::history;
use crate::identity::{Identity, IdentityError, IdentityOptions};
use crate::recheck::Rechecks;
use crate::recorder::Recorder;
use crate::redis::{
    self as log, AppendError, IdentityEvent, Job, LogHealth, Outcome, RedisLog, RedisOptions,
};

/// Why a hub call did not return the core's answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HubError {
    /// The core refused the command.
    #[error(transparent)]
    Refused(#[from] Error),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
    /// The shared log (Redis) could not take the request; nothing was posted. Retry later.
    #[error("the shared log is unavailable: {0}")]
    Unavailable(String),
    /// An upload's bytes stopped coming (a broken connection); nothing was kept.
    #[error("the upload did not arrive whole: {0}")]
    Body(String),
    /// An upload did not arrive whole within its deadline; nothing was kept.
    #[error("the upload did not arrive in time: {0}")]
    TimedOut(String),
    /// Attachments cannot be kept or read now.
    #[error("the file store failed: {0}")]
    Storage(String),
}

/// Tuning that belongs to the hub rather than the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Deliveries buffered per room for its listeners. A listener further behind than this is
    /// resynced from history (default 1,024).
    pub room_buffer: usize,
    /// Requests waiting for the hub before callers wait to send (default 4,096).
    pub queue: usize,
    /// Record every input to the core, and its outputs, to this file (JSON lines).
    pub record_inputs: Option<PathBuf>,
    /// Share rooms with other nodes through this Redis (see [`crate::redis`]).
    pub redis: Option<RedisOptions>,
    /// Keep attachments in this directory (see [`crate::files`]); none are taken without one.
    pub files: Option<PathBuf>,
    /// What the attachments may take.
    pub file_quotas: crate::files::Quotas,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            room_buffer: 1024,
            queue: 4096,
            record_inputs: None,
            redis: None,
            files: None,
            file_quotas: crate::files::Quotas::default(),
        }
    }
}

/// A request to the hub thread: plain data, and where to send the answer. (A command is
/// boxed: the largest ones are far larger than the rest, and the channel holds requests.)
pub(crate) enum Request {
    Command(Box<Command>, async_channel::Sender<Answer>),
    Stats(async_channel::Sender<Stats>),
    Shutdown(async_channel::Sender<()>),
}

/// The core's answer, released once durable. An opened listener comes with its receiver,
/// placed in the room's broadcast at exactly the point of the room's output where it opened,
/// and the guard that closes it: if the caller has gone by the time the answer arrives (its
/// connection dropped mid-request), dropping the answer closes the listener, so none is ever
/// left behind.
pub(crate) struct Answer {
    pub(crate) reply: Result<Reply, HubError>,
    pub(crate) opened: Option<(Receiver<Broadcast>, ListenerGuard)>,
}

/// A handle to the hub thread. Cheap to clone (two pointers: every stream and request holds
/// one); the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Hub {
    requests: async_channel::Sender<Request>,
    shared: Arc<Shared>,
}

/// What every handle to one hub shares.
struct Shared {
    stopping: Arc<AtomicBool>,
    /// Where messages older than core's ring are read: the store, or Redis's streams.
    older: Option<Arc<dyn history::Older>>,
    identity: Arc<Identity>,
    log_health: Option<Arc<LogHealth>>,
    node_id: Option<Arc<str>>,
    /// Where attachments are kept, and core's limits on them.
    files: Option<Arc<Files>>,
    limits: Limits,
    /// Held by each round of the departures thread (see [`crate::departures`]).
    departures: Arc<async_lock::Mutex<()>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stopping", &self.shared.stopping)
            .field("older", &self.shared.older.is_some())
            .finish_non_exhaustive()
    }
}

/// An opened listener as the hub hands it over: the core's answer, its receiver, and the
/// guard that closes it. If the caller has gone by the time this arrives (its connection
/// dropped mid-request), dropping it closes the listener, so none is ever left behind.
pub(crate) struct Opening {
    pub(crate) opened: Opened,
    pub(crate) receiver: Receiver<Broadcast>,
    pub(crate) guard: ListenerGuard,
}

/// Closes a listener when dropped. `Drop` cannot wait, so closes have their own unbounded
/// channel (at most one close per open listener).
pub(crate) struct ListenerGuard {
    closes: async_channel::Sender<ListenerId>,
    pub(crate) listener: ListenerId,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        let _ = self.closes.try_send(self.listener);
    }
}

/// No upload by this id that the caller may use.
fn attachment_not_found(id: &str) -> HubError {
    HubError::Refused(Error::Attachment(AttachmentError::NotFound {
        id: id.to_owned(),
    }))
}

/// Removes uploads never posted, often enough that none outlives its pending time by more than
/// a tenth, on a thread of its own. Whether an upload was posted follows from the store: one a
/// stored message names is kept, whatever its marker says.
fn sweep_pending(files: &Arc<Files>, store: Option<&Arc<Store>>) {
    let every = files.sweep_every();
    let files = Arc::downgrade(files);
    // Weak, so a hub its callers dropped releases its store at once.
    let store = store.map(Arc::downgrade);
    let posted = move |room: &RoomId, id: &str| match &store {
        None => false,
        // When the store cannot say (or is gone), the upload stays: a later sweep asks again.
        Some(store) => store.upgrade().is_none_or(|store| {
            store.names_attachment(room, id).unwrap_or_else(|e| {
                tracing::warn!(%room, id, error = %e, "cannot tell whether an upload was posted");
                true
            })
        }),
    };
    let spawned = std::thread::Builder::new()
        .name("roomcast-files".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(files) = files.upgrade() else { return };
                let removed = files.sweep(&posted);
                if removed > 0 {
                    tracing::info!(removed, "removed uploads never posted");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "uploads never posted will not be removed");
    }
}

/// Who is who: in the store, or with `--redis` in a directory every node shares (whose secret
/// they agree on).
pub(crate) fn open_identity(
    identity: IdentityOptions,
    redis: Option<&RedisOptions>,
    store: Option<Arc<Store>>,
) -> Result<Identity, StartError> {
    match redis {
        Some(redis) => {
            let directory = RedisDirectory::connect(
                log::Target::parse(&redis.url, redis.cluster).map_err(StartError::Redis)?,
            )
            .map_err(StartError::Redis)?;
            let secret = directory
                .agree_secret(identity.secret.as_deref())
                .map_err(StartError::Redis)?;
            let options = IdentityOptions {
                secret: Some(secret),
                ..identity
            };
            Ok(Identity::shared(options, Arc::new(directory))?)
        }
        None => Ok(Identity::new(identity, store)?),
    }
}

/// The ids of the admins' accounts (`--admins` names them): only accounts the operator made
/// are admins, and each name without one is said at start, with how to make it.
fn admin_ids(
    identity: &Identity,
    names: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let names: Vec<String> = names.iter().cloned().collect();
    let mut ids = std::collections::BTreeSet::new();
    for (name, account) in identity.admin_accounts(&names) {
        match account {
            Some(id) => {
                tracing::info!(admin = %name, user = %id, "an admin's account");
                ids.insert(id.as_str().to_owned());
            }
            None => tracing::warn!(
                admin = %name,
                "no account holds this admin's name, so nobody is this admin: make it with \
                 `--set-password {name}` (the password on standard input) before starting"
            ),
        }
    }
    ids
}

/// The hub's wall clock: the one place the server reads the time for the core.
pub(crate) fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// Why the hub could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data dir cannot be used (the message says why and what to do).
    #[error(transparent)]
    Open(#[from] roomcast_store::OpenError),
    /// The stored state could not be read.
    #[error("cannot restore from {path}: {source}")]
    Restore {
        /// The database file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: roomcast_store::StoreError,
    },
    /// A thread could not be started.
    #[error("cannot start the hub thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Token keys or accounts could not be set up.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// `--set-password` could not set it.
    #[error("{0}")]
    Account(String),
    /// Redis could not be reached or set up.
    #[error("{0}")]
    Redis(String),
    /// The attachments directory cannot be used.
    #[error("cannot keep attachments in {path}: {source}")]
    Files {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file for `--record-inputs` could not be created.
    #[error("cannot record inputs to {path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl Hub {
    /// Starts the hub thread. With a store, first rebuilds the core from it and starts its
    /// writer, so numbering continues where it stopped.
    pub fn start(
        config: Config,
        options: HubOptions,
        store: Option<(Arc<Store>, Retention)>,
        identity: IdentityOptions,
    ) -> Result<Hub, StartError> {
        if options.redis.is_some() && config.room_idle_expiry.is_some() {
            // A node sees only its own listeners: expiring would delete a room others use.
            return Err(StartError::Redis(
                "--room-idle-expiry cannot be combined with --redis yet: a node sees only its own \
                 listeners, so it could delete a room people listen to on other nodes"
                    .into(),
            ));
        }
        let redis = match &options.redis {
            Some(redis) => {
                let started = log::start(redis.clone()).map_err(StartError::Redis)?;
                tracing::info!(node = %redis.node_id, redis = %log::redact(&redis.url), "sharing rooms through Redis");
                Some(started)
            }
            None => None,
        };
        let identity = open_identity(
            identity,
            options.redis.as_ref(),
            store.as_ref().map(|(store, _)| store.clone()),
        )?;
        let identity = Arc::new(identity);
        let mut config = config;
        config.policy.admins = admin_ids(&identity, &config.policy.admins);
        let (requests, request_rx) = async_channel::bounded(options.queue.max(1));
        let (closes, close_rx) = async_channel::unbounded();
        let files = match &options.files {
            Some(path) => {
                let files =
                    Files::open(path, options.file_quotas).map_err(|source| StartError::Files {
                        path: path.clone(),
                        source,
                    })?;
                let files = Arc::new(files);
                sweep_pending(&files, store.as_ref().map(|(store, _)| store));
                Some(files)
            }
            None => None,
        };
        let limits = config.limits.clone();
        if redis.is_some() {
            config.sequencer = Sequencer::Shared;
        }
        if redis.is_none() && store.is_none() {
            // Memory holds the only copy of every message.
            config.unload_after = None;
        }
        // The header holds the configuration core runs with, as settled above.
        let mut recorder = match &options.record_inputs {
            Some(path) => {
                Some(
                    Recorder::create(path, &config).map_err(|source| StartError::Record {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let mut core = Core::new(config);
        let mut step = |core: &mut Core, input: Input| match &mut recorder {
            Some(recorder) => recorder.run(core, now(), input),
            None => drop(roomcast_core::record::run(core, now(), input)),
        };
        let older: Option<Arc<dyn history::Older>> = match (&store, &redis) {
            (_, Some(redis)) => Some(Arc::new(log::RedisOlder {
                jobs: redis.jobs.clone(),
            })),
            (Some((store, _)), None) => Some(store.clone()),
            (None, None) => None,
        };
        let writer = match (&store, redis) {
            (_, Some(redis)) => {
                step(&mut core, Input::RestoreMessageIds(redis.first_ids));
                Some(Writer::Redis(redis))
            }
            (None, None) => None,
            (Some((store, retention)), None) => {
                let restore = |source| StartError::Restore {
                    path: store.path().to_owned(),
                    source,
                };
                // Rooms idle longer than they would stay in memory come back without their
                // messages (read from disk when asked for).
                let warm_since = match core.config().unload_after {
                    Some(idle) => Timestamp::from(SystemTime::now() - idle),
                    None => Timestamp::EPOCH,
                };
                let loaded = store
                    .load_warm(core.config().history_len, warm_since)
                    .map_err(restore)?;
                let (rooms, messages) = (loaded.rooms.len(), loaded.next_message_id);
                for room in loaded.rooms {
                    step(&mut core, Input::RestoreRoom(room));
                }
                step(&mut core, Input::RestoreMessageIds(messages));
                tracing::info!(rooms, next_message_id = messages.0, path = %store.path().display(), "restored");
                Some(Writer::Store(
                    store.journal(*retention, now).map_err(restore)?,
                ))
            }
        };
        let log_health = match &writer {
            Some(Writer::Redis(redis)) => Some(redis.health.clone()),
            Some(Writer::Store(_)) | None => None,
        };
        let driver = Driver {
            core,
            rooms: Rooms {
                channels: HashMap::new(),
                buffer: options.room_buffer.max(1),
                closes,
            },
            writer,
            barrier: Barrier::default(),
            appending: HashMap::new(),
            loading: HashMap::new(),
            rechecks: Rechecks::default(),
            listing: HashMap::new(),
            next_ticket: 0,
            cluster_rooms: 0,
            // Only a shared identity hears from other nodes; a single node's stays with its
            // handles (and its store is released when the last handle goes).
            shared_identity: log_health.as_ref().map(|_| identity.clone()),
            recorder,
            durable: Vec::new(),
            outputs: Vec::new(),
            files: files.clone(),
        };
        std::thread::Builder::new()
            .name("roomcast-hub".into())
            .spawn(move || async_io::block_on(driver.run(request_rx, close_rx)))?;
        let hub = Hub {
            requests,
            shared: Arc::new(Shared {
                stopping: Arc::new(AtomicBool::new(false)),
                older,
                identity,
                log_health,
                node_id: options
                    .redis
                    .as_ref()
                    .map(|r| Arc::from(r.node_id.as_str())),
                files,
                limits,
                departures: Arc::default(),
            }),
        };
        let requests = hub.requests.downgrade();
        departures::reclaim_departed(Departures {
            ask: Box::new(move |depart| {
                let requests = requests.upgrade()?;
                let departed = async_io::block_on(Hub::ask_over(&requests, depart));
                Some(departed.map_err(|e| e.to_string()))
            }),
            identity: Arc::downgrade(&hub.shared.identity),
            stopping: hub.shared.stopping.clone(),
            round: hub.shared.departures.clone(),
        });
        Ok(hub)
    }

    /// With a shared log: how many times its pub/sub was found wedged and replaced.
    pub fn log_wedged(&self) -> u64 {
        self.shared
            .log_health
            .as_ref()
            .map_or(0, |h| h.wedged.load(Ordering::Relaxed))
    }

    /// This node's name, when it shares rooms with others.
    pub fn node_id(&self) -> Option<&str> {
        self.shared.node_id.as_deref()
    }

    /// With a shared log: whether its pub/sub delivers (a wedged subscription is being
    /// replaced when not). `None` on a single node.
    pub fn log_healthy(&self) -> Option<bool> {
        self.shared
            .log_health
            .as_ref()
            .map(|h| h.pubsub_ok.load(Ordering::SeqCst))
    }

    /// Accounts, guests and tokens; signing in and up.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.shared.identity
    }

    /// Where messages older than core's ring are read, if anywhere.
    pub(crate) fn older(&self) -> Option<&Arc<dyn history::Older>> {
        self.shared.older.as_ref()
    }

    /// Posts an entry (a message, or an edit, deletion or reaction). The attachments a post
    /// names by id are the poster's uploads to the room, described as they were kept. A change
    /// to a message older than what core holds is asked again with the message read from the
    /// store; with a shared log, whose stream keeps entries as appended, it stays refused
    /// (`message-not-held`).
    pub async fn submit(&self, mut submit: Submit) -> Result<Submitted, HubError> {
        let started = Instant::now();
        let attached = self.describe_attachments(&mut submit).await?;
        let answer = self.submit_described(submit).await;
        if answer.is_ok() {
            metrics::histogram!("roomcast_submit_seconds").record(started.elapsed());
        }
        if let (Some((room, ids)), Ok(done)) = (attached, &answer)
            && let Some(files) = &self.shared.files
            && !done.duplicate
        {
            files.posted(&room, ids).await;
        }
        answer
    }

    /// Fills in each attachment a post names by id from the upload kept (the poster's, in this
    /// room); returns the room and ids, to mark them posted once it is.
    async fn describe_attachments(
        &self,
        submit: &mut Submit,
    ) -> Result<Option<(RoomId, Vec<String>)>, HubError> {
        let Kind::Post { attachments, .. } = &mut submit.kind else {
            return Ok(None);
        };
        if attachments.is_empty() {
            return Ok(None);
        }
        // Core's own check, before any is looked for.
        self.shared
            .limits
            .check_attachments(attachments)
            .map_err(|e| HubError::Refused(e.into()))?;
        let (Some(files), Ok(room)) = (&self.shared.files, RoomId::parse(&submit.room, usize::MAX))
        else {
            return Err(attachment_not_found(&attachments[0].id));
        };
        for attachment in attachments.iter_mut() {
            let found = files
                .find(&room, &attachment.id)
                .await
                .map_err(|e| HubError::Storage(e.to_string()))?;
            match found {
                Some(kept) if kept.uploader.as_str() == submit.user => {
                    *attachment = kept.attachment;
                }
                Some(_) | None => return Err(attachment_not_found(&attachment.id)),
            }
        }
        let ids = attachments.iter().map(|a| a.id.clone()).collect();
        Ok(Some((room, ids)))
    }

    async fn submit_described(&self, submit: Submit) -> Result<Submitted, HubError> {
        let (room, seq) = match self.ask(submit.clone()).await {
            Err(HubError::Refused(Error::NotHeld { room, seq })) => (room, seq),
            answer => return answer,
        };
        let refused = Err(HubError::Refused(Error::NotHeld {
            room: room.clone(),
            seq,
        }));
        let Some(older) = self.older().cloned().filter(|o| o.as_changed()) else {
            return refused;
        };
        let after = Seq(seq.0.saturating_sub(1));
        let read = blocking::unblock(move || older.after(&room, after, seq.next(), 1)).await;
        match read {
            Ok(mut found) if found.len() == 1 => {
                let recalled = found.pop();
                self.ask(Submit { recalled, ..submit }).await
            }
            // Retention took it.
            Ok(_) => refused,
            Err(e) => Err(HubError::Unavailable(e)),
        }
    }

    /// Keeps `body` as `user`'s upload to `room`, named `name`, once core allows it (`size`
    /// is its length if known before reading it): at most `--max-attachment-bytes` of it is read.
    pub async fn upload(
        &self,
        user: &str,
        room: &str,
        name: &str,
        size: Option<u64>,
        body: impl futures_lite::AsyncRead + Unpin,
    ) -> Result<Stored, HubError> {
        let files = self.shared.files.as_ref().ok_or_else(|| {
            HubError::Storage(
                "this server keeps no files: start it with --files-dir or a data dir".into(),
            )
        })?;
        let upload = Upload {
            user: user.to_owned(),
            room: room.to_owned(),
            size,
        };
        self.ask(upload).await?;
        // Core checked both names.
        let (Ok(user), Ok(room)) = (
            UserId::parse(user, usize::MAX),
            RoomId::parse(room, usize::MAX),
        ) else {
            unreachable!("core checked the names")
        };
        files
            .save(
                &room,
                &user,
                name,
                body,
                self.shared.limits.max_attachment_bytes,
                now(),
            )
            .await
            .map_err(|e| match e {
                SaveError::Refused(refused) => HubError::Refused(refused.into()),
                SaveError::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    HubError::TimedOut(e.to_string())
                }
                SaveError::Body(e) => HubError::Body(e.to_string()),
                SaveError::Storage(e) => HubError::Storage(e.to_string()),
            })
    }

    /// The upload `id` of `room`, for `user` if they may read the room, with where its bytes
    /// are: not found unless it was uploaded to the room as it now is (not to an earlier room
    /// of the same name).
    pub async fn attachment(
        &self,
        user: &str,
        room: &str,
        id: &str,
    ) -> Result<(Stored, PathBuf), HubError> {
        let view = ViewRoom {
            user: user.to_owned(),
            room: room.to_owned(),
        };
        let view = self.ask(view).await?;
        let not_found = || attachment_not_found(id);
        let files = self.shared.files.as_ref().ok_or_else(not_found)?;
        let kept = files
            .find(&view.room.id, id)
            .await
            .map_err(|e| HubError::Storage(e.to_string()))?
            .filter(|kept| kept.uploaded_at >= view.room.created_at)
            .ok_or_else(not_found)?;
        Ok((kept, files.path(&view.room.id, id)))
    }

    /// Runs `command` on the core and returns its typed answer once everything it changed is
    /// durable. Events it causes are broadcast before the next command's.
    pub async fn ask<C: Ask>(&self, command: C) -> Result<C::Answer, HubError> {
        let answer = self.send(Box::new(command.into())).await?;
        Self::typed::<C>(answer.reply)
    }

    /// [`Hub::ask`] over the hub thread's request channel alone.
    async fn ask_over<C: Ask>(
        requests: &async_channel::Sender<Request>,
        command: C,
    ) -> Result<C::Answer, HubError> {
        let command = Box::new(command.into());
        let answer = send_request(requests, None, |tx| Request::Command(command, tx)).await?;
        Self::typed::<C>(answer.reply)
    }

    /// The answer inside `reply`, typed by the command that asked.
    pub(crate) fn typed<C: Ask>(reply: Result<Reply, HubError>) -> Result<C::Answer, HubError> {
        // The hub answers each command with the reply of the same name (a submit the shared
        // log numbered included).
        reply
            .map(|reply| C::answer(reply).expect("the hub answers each command with its own reply"))
    }

    /// Sends a command and waits for its released answer. (Boxed, and no future of its own:
    /// every stream's state holds one of these futures, so it stays small.)
    pub(crate) fn send(
        &self,
        command: Box<Command>,
    ) -> impl Future<Output = Result<Answer, HubError>> + '_ {
        self.request(move |tx| Request::Command(command, tx))
    }

    /// Sends a request with a channel for its answer, and waits for the answer; refused once
    /// the hub is stopping.
    fn request<'a, T: 'a>(
        &'a self,
        make: impl FnOnce(async_channel::Sender<T>) -> Request + 'a,
    ) -> impl Future<Output = Result<T, HubError>> + 'a {
        send_request(&self.requests, Some(&self.shared.stopping), make)
    }

    /// A page of a room's history, oldest first: the core's answer, completed from the store
    /// where the ring ends.
    pub async fn history(&self, history: History) -> Result<HistoryPage, HubError> {
        let cursor = history.cursor;
        let page = self.ask(history).await?;
        let Some(store) = self.older().cloned() else {
            return Ok(page);
        };
        if page.first_held <= Seq(1) {
            return Ok(page); // The ring holds the whole room.
        }
        let fallback = page.clone();
        let extended =
            blocking::unblock(move || history::complete(store.as_ref(), cursor, page)).await;
        Ok(extended.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading older history failed; answering from memory");
            fallback
        }))
    }

    /// Opens a listener (the command says on which room, for whom, from where, and whether it
    /// replaces one) and hands it over with its receiver.
    pub(crate) async fn open(&self, open: OpenListener) -> Result<Opening, HubError> {
        let answer = self.send(Box::new(open.into())).await?;
        let opened = Hub::typed::<OpenListener>(answer.reply)?;
        // An answer to an opened listener always carries its receiver and guard.
        let (receiver, guard) = answer
            .opened
            .expect("an opened listener comes with its receiver");
        Ok(Opening {
            opened,
            receiver,
            guard,
        })
    }

    /// Whether this node should be sent traffic: not shutting down, its hub thread answering
    /// (it stops the process if the store fails a commit, so an answering hub has a store that
    /// takes writes), and with `--redis` its pub/sub delivering. `Err` says what is not.
    pub async fn readiness(&self) -> Result<(), String> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        self.stats().await.map_err(|e| e.to_string())?;
        if self.log_healthy() == Some(false) {
            return Err("Redis pub/sub is being reconnected".into());
        }
        Ok(())
    }

    /// The core's counters.
    pub async fn stats(&self) -> Result<Stats, HubError> {
        self.request(Request::Stats).await
    }

    /// Ends every subscription with [`CloseReason::ShuttingDown`] and refuses further calls.
    /// With a store, returns once everything accepted is committed and the writer has stopped.
    pub async fn shutdown(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // A round of departures under way ends first (it may need the hub thread).
        drop(self.shared.departures.lock().await);
        let (tx, rx) = async_channel::bounded(1);
        if self.requests.send(Request::Shutdown(tx)).await.is_ok() {
            let _ = rx.recv().await;
        }
    }
}

/// Sends a request with a channel for its answer, and waits for the answer; refused once
/// `stopping` is set.
async fn send_request<T>(
    requests: &async_channel::Sender<Request>,
    stopping: Option<&AtomicBool>,
    make: impl FnOnce(async_channel::Sender<T>) -> Request,
) -> Result<T, HubError> {
    if stopping.is_some_and(|s| s.load(Ordering::SeqCst)) {
        return Err(HubError::Stopped);
    }
    let (tx, rx) = async_channel::bounded(1);
    requests
        .send(make(tx))
        .await
        .map_err(|_| HubError::Stopped)?;
    rx.recv().await.map_err(|_| HubError::Stopped)
}

/// A room's broadcast channel. The inactive receiver keeps it open while nobody listens.
struct Channel {
    tx: Sender<Broadcast>,
    _keep_open: InactiveReceiver<Broadcast>,
}

/// Every room's broadcast channel.
struct Rooms {
    channels: HashMap<RoomId, Channel>,
    buffer: usize,
    /// Where listener guards send their closes.
    closes: async_channel::Sender<ListenerId>,
}

impl Rooms {
    fn broadcast(&mut self, room: &RoomId, broadcast: Broadcast) {
        if let Some(channel) = self.channels.get(room) {
            // Never waits: with overflow on, a full buffer drops its oldest entry and the
            // listeners that had not read it resync from history.
            let _ = channel.tx.try_broadcast(broadcast);
        }
    }

    fn close(&mut self, room: &RoomId, reason: CloseReason) {
        if let Some(channel) = self.channels.remove(room) {
            let _ = channel
                .tx
                .try_broadcast(Broadcast::Room(Delivery::Closed(reason)));
            channel.tx.close();
        }
    }

    /// A receiver that gets everything broadcast to `room` from now on.
    fn receiver(&mut self, room: &RoomId) -> Receiver<Broadcast> {
        let buffer = self.buffer;
        let channel = self.channels.entry(room.clone()).or_insert_with(|| {
            let (mut tx, rx) = async_broadcast::broadcast(buffer);
            tx.set_overflow(true);
            tx.set_await_active(false);
            Channel {
                tx,
                _keep_open: rx.deactivate(),
            }
        });
        channel.tx.new_receiver()
    }

    fn end_all(&mut self) {
        for (_, channel) in self.channels.drain() {
            let closed = Delivery::Closed(CloseReason::ShuttingDown);
            let _ = channel.tx.try_broadcast(Broadcast::Room(closed));
            channel.tx.close();
        }
    }
}

/// Something a step produced, released in order once the step is durable.
enum Output {
    Broadcast(RoomId, Broadcast),
    Close(RoomId, CloseReason),
    /// Let go of a room's uploads: those a deleted message carried, or all of a deleted room.
    DropFiles(RoomId, Option<Vec<String>>),
    Answer(Result<Reply, HubError>, async_channel::Sender<Answer>),
    Stats(Stats, async_channel::Sender<Stats>),
}

impl Output {
    fn release(self, rooms: &mut Rooms, files: Option<&Arc<Files>>) {
        match self {
            Output::Broadcast(room, broadcast) => rooms.broadcast(&room, broadcast),
            Output::Close(room, reason) => rooms.close(&room, reason),
            Output::DropFiles(room, ids) => {
                if let Some(files) = files.cloned() {
                    blocking::unblock(move || match ids {
                        Some(ids) => files.drop_uploads(&room, &ids),
                        None => files.drop_room(&room),
                    })
                    .detach();
                }
            }
            Output::Answer(reply, tx) => {
                let opened = match &reply {
                    Ok(Reply::OpenListener(opened)) => {
                        let guard = ListenerGuard {
                            closes: rooms.closes.clone(),
                            listener: opened.listener,
                        };
                        Some((rooms.receiver(&opened.room), guard))
                    }
                    Ok(_) | Err(_) => None,
                };
                let _ = tx.try_send(Answer { reply, opened });
            }
            Output::Stats(stats, tx) => {
                let _ = tx.try_send(stats);
            }
        }
    }
}

/// Where durable changes go: the embedded store, or the shared log (Redis), which has the
/// messages already and takes room changes.
enum Writer {
    Store(Journal),
    Redis(RedisLog),
}

impl Writer {
    fn progress(&self) -> async_channel::Receiver<Progress> {
        match self {
            Writer::Store(journal) => journal.progress().clone(),
            Writer::Redis(redis) => redis.progress.clone(),
        }
    }

    /// Whether this writer stores `event`.
    fn keeps(&self, event: &Event) -> bool {
        match self {
            Writer::Store(_) => event.is_durable(),
            // Messages are in the log already, and so is a deletion core learnt from the log
            // (`Deleted { by: None }`): writing it again could delete a room re-created since.
            Writer::Redis(_) => {
                event.is_durable()
                    && !matches!(
                        event,
                        Event::Published(_)
                            | Event::RoomClosed {
                                reason: RoomEnd::Deleted { by: None },
                                ..
                            }
                    )
            }
        }
    }

    fn write(&self, events: Vec<Event>) -> Result<(), ()> {
        match self {
            Writer::Store(journal) => journal.write(events).map_err(|_| ()),
            Writer::Redis(redis) => redis.write(events),
        }
    }

    fn close(&mut self) {
        match self {
            Writer::Store(journal) => journal.close(),
            Writer::Redis(redis) => redis.close(),
        }
    }

    fn redis(&self) -> Option<&RedisLog> {
        match self {
            Writer::Redis(redis) => Some(redis),
            Writer::Store(_) => None,
        }
    }
}

/// A command and whom to answer.
type Waiting = (Command, async_channel::Sender<Answer>);

/// The state owned by the hub thread.
struct Driver {
    core: Core,
    rooms: Rooms,
    writer: Option<Writer>,
    /// Submits the shared log is numbering, by message id.
    appending: HashMap<MessageId, async_channel::Sender<Answer>>,
    /// Commands waiting for their room to be loaded from the shared log.
    loading: HashMap<RoomId, Vec<Waiting>>,
    /// How many rooms every node together holds (Redis's index, counted every few seconds and
    /// counted up on each creation here): the room limit is the cluster's.
    cluster_rooms: usize,
    /// Room listings Redis is reading, by ticket, and the last ticket given.
    listing: HashMap<u64, async_channel::Sender<Answer>>,
    next_ticket: u64,
    /// Requests refused on what this node had applied of a room, waiting to be decided again
    /// once it caught up with the log.
    rechecks: Rechecks<Waiting>,
    /// With a shared log: told of revocations and new accounts on other nodes.
    shared_identity: Option<Arc<Identity>>,
    barrier: Barrier<Output>,
    recorder: Option<Recorder>,
    /// What the current step must persist.
    durable: Vec<Event>,
    /// What the current step produced.
    outputs: Vec<Output>,
    /// Where attachments are kept, if anywhere.
    files: Option<Arc<Files>>,
}

/// What woke the hub thread.
enum Wake {
    Request(Request),
    Close(ListenerId),
    Timeout,
    Progress(Progress),
    Log(Box<Outcome>),
    /// Time to read every room's log again (the quiet-room check).
    Check,
    Disconnected,
}

/// How often every room this node serves is read from the shared log, so a message lost on a
/// quiet room's pub/sub is found.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// The exit code when the store fails (EX_IOERR).
const EXIT_STORAGE_FAILED: i32 = 74;

impl Driver {
    async fn run(
        mut self,
        requests: async_channel::Receiver<Request>,
        closes: async_channel::Receiver<ListenerId>,
    ) {
        let progress = self.writer.as_ref().map(Writer::progress);
        let outcomes = self
            .writer
            .as_ref()
            .and_then(Writer::redis)
            .map(|r| r.outcomes.clone());
        let mut next_check = Instant::now() + CHECK_EVERY;
        // Counts the cluster's rooms at once (the room limit is theirs together).
        self.read_all();
        loop {
            let deadline = self.core.poll_timeout();
            let timer = async {
                match deadline {
                    Some(at) => {
                        async_io::Timer::at(Instant::now() + at.saturating_since(now())).await;
                        Wake::Timeout
                    }
                    None => std::future::pending().await,
                }
            };
            let durable = async {
                match &progress {
                    // The writer stops only when the hub closes it, or when it fails.
                    Some(rx) => match rx.recv().await {
                        Ok(p) => Wake::Progress(p),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let shared = async {
                match &outcomes {
                    Some(rx) => {
                        let outcome = async {
                            match rx.recv().await {
                                Ok(o) => Wake::Log(Box::new(o)),
                                Err(_) => std::future::pending().await,
                            }
                        };
                        let check = async {
                            async_io::Timer::at(next_check).await;
                            Wake::Check
                        };
                        outcome.or(check).await
                    }
                    None => std::future::pending().await,
                }
            };
            let close = async { closes.recv().await.map_or(Wake::Disconnected, Wake::Close) };
            let request = async {
                requests
                    .recv()
                    .await
                    .map_or(Wake::Disconnected, Wake::Request)
            };
            let wake = durable.or(shared).or(close).or(request).or(timer).await;
            // The time is read once per step.
            let now = now();
            match wake {
                Wake::Progress(Progress::Committed(n)) => {
                    let released = self.barrier.committed(n);
                    self.release(released);
                    continue;
                }
                Wake::Progress(Progress::Failed(reason)) => {
                    // Nothing uncommitted was acknowledged, and a restart resumes from the last
                    // commit; carrying on would acknowledge messages that are not stored (as
                    // PostgreSQL stops when fsync fails).
                    tracing::error!(%reason, "storage failed; stopping so nothing uncommitted is acknowledged");
                    std::process::exit(EXIT_STORAGE_FAILED);
                }
                Wake::Request(Request::Command(command, tx)) => {
                    self.request(now, *command, tx, true);
                }
                Wake::Log(outcome) => self.outcome(now, *outcome),
                Wake::Check => {
                    next_check = Instant::now() + CHECK_EVERY;
                    self.read_all();
                }
                Wake::Request(Request::Stats(tx)) => {
                    self.outputs.push(Output::Stats(self.core.stats(), tx));
                }
                Wake::Request(Request::Shutdown(tx)) => {
                    self.stop();
                    let _ = tx.try_send(());
                    continue;
                }
                Wake::Close(listener) => {
                    // Its answer (whether it was open) interests nobody.
                    let _ = self.command(now, CloseListener { listener }.into());
                }
                Wake::Timeout => {
                    self.core.handle_timeout(now);
                    let recorded = self.recorder.is_some().then_some(Input::Timeout);
                    self.drain(now, recorded, None);
                }
                // Every hub handle is gone.
                Wake::Disconnected => {
                    self.stop();
                    return;
                }
            }
            self.end_step();
        }
    }

    /// Answers a request: with a shared log, first loads the room it names if this node does
    /// not hold it, sends a submit's draft to be numbered, and lets a listener that resumes
    /// past what this node has applied wait for a read of the log (once).
    fn request(
        &mut self,
        now: Timestamp,
        command: Command,
        tx: async_channel::Sender<Answer>,
        first_try: bool,
    ) {
        if self.log().is_none() {
            let reply = self.command(now, command).map_err(HubError::from);
            self.outputs.push(Output::Answer(reply, tx));
            return;
        }
        if let Command::ListRooms(list) = &command {
            // Every room is in Redis's index, not only those this node holds: core checks the
            // asker, then the log thread reads a page and lists it by core's rule.
            match self.core.list_rooms(list) {
                Err(refused) => {
                    self.outputs
                        .push(Output::Answer(Err(HubError::Refused(refused)), tx));
                }
                Ok(_) => {
                    let limits = &self.core.config().limits;
                    self.next_ticket += 1;
                    let job = Job::ListRooms {
                        user: UserId::parse(&list.user, usize::MAX).expect("core checked the name"),
                        after: list.after.clone(),
                        limit: limits.rooms_page(list.limit),
                        policy: self.core.config().policy.clone(),
                        ticket: self.next_ticket,
                    };
                    if self.to_log(job) {
                        self.listing.insert(self.next_ticket, tx);
                    }
                }
            }
            return;
        }
        if let Some(room) = command.room()
            && !self.core.holds(room.as_str())
        {
            let waiting = self.loading.entry(room.clone()).or_default();
            let first = waiting.is_empty();
            waiting.push((command, tx));
            if first {
                let history_len = self.core.config().history_len;
                self.to_log(Job::Load { room, history_len });
            }
            return;
        }
        self.run_here(now, command, tx, first_try);
    }

    /// Runs a command on the core with the room it names in place (held here, or known not
    /// to exist in the log): a submit's draft goes to be numbered, and a listener that resumes
    /// past what this node has applied waits for a read of the log (once).
    fn run_here(
        &mut self,
        now: Timestamp,
        command: Command,
        tx: async_channel::Sender<Answer>,
        first_try: bool,
    ) {
        let retry = first_try.then(|| command.clone());
        if let Command::Depart(depart) = &command
            && let Ok(user) = UserId::parse(&depart.user, usize::MAX)
        {
            // What the departed guest left on rooms not held here is in Redis.
            self.to_log(Job::Depart(user));
        }
        // Who is typing where, for the shared log to announce if core says to.
        let typist = if let Command::Typing(typing) = &command {
            command
                .room()
                .zip(UserId::parse(&typing.user, usize::MAX).ok())
        } else {
            None
        };
        match self.command(now, command) {
            // With a shared log, typing is announced through it, to every node.
            Ok(Reply::Typing(true)) if self.core.config().sequencer == Sequencer::Shared => {
                if let Some((room, user)) = typist {
                    self.to_log(Job::Typing { room, user });
                }
                self.outputs
                    .push(Output::Answer(Ok(Reply::Typing(true)), tx));
            }
            Ok(Reply::Append(draft)) => {
                let id = draft.id;
                if self.to_log(Job::Append(draft)) {
                    self.appending.insert(id, tx);
                } else {
                    let stopped = Err(HubError::Stopped);
                    self.outputs.push(Output::Answer(stopped, tx));
                }
                let block = self.log().map_or(log::ID_BLOCK, |redis| redis.id_block);
                if self.core.next_message_id().0 % block == block / 2 {
                    self.to_log(Job::ReserveIds);
                }
            }
            // Refused on this node's replica, which may be behind: catch up with the log and
            // decide again, so no refusal contradicts an entry acknowledged before.
            Err(refused) if refused.may_be_stale() && retry.is_some() => {
                let retry = retry.expect("kept on a first try");
                match retry.room() {
                    Some(room) => {
                        if self.rechecks.wait(room.clone(), (retry, tx)) {
                            self.catch_up(now, room);
                        }
                    }
                    None => {
                        let refused = Err(HubError::Refused(refused));
                        self.outputs.push(Output::Answer(refused, tx));
                    }
                }
            }
            reply => self
                .outputs
                .push(Output::Answer(reply.map_err(HubError::from), tx)),
        }
    }

    /// The shared log, if this node has one.
    fn log(&self) -> Option<&RedisLog> {
        self.writer.as_ref().and_then(Writer::redis)
    }

    /// Hands `job` to the shared log's thread; false if there is none or it stopped.
    fn to_log(&self, job: Job) -> bool {
        self.log()
            .is_some_and(|redis| redis.jobs.try_send(job).is_ok())
    }

    /// Reads the room as Redis has it now (its access, then its log after what this node
    /// applied), then decides again what waited for that. Without a log to ask, at once.
    fn catch_up(&mut self, now: Timestamp, room: RoomId) {
        let after = self.core.latest(room.as_str()).unwrap_or(Seq::ZERO);
        let job = Job::CatchUp {
            room: room.clone(),
            after,
        };
        if !self.to_log(job) {
            self.caught_up(now, &room);
        }
    }

    /// The catch-up of `room` ended: the requests it answers are decided again, on what this
    /// node now has; those that came while it ran wait for another.
    fn caught_up(&mut self, now: Timestamp, room: &RoomId) {
        let (again, more) = self.rechecks.caught_up(room);
        if more {
            self.catch_up(now, room.clone());
        }
        for (command, tx) in again {
            self.request(now, command, tx, false);
        }
    }

    /// Reads the room's log after what this node applied.
    fn read_after_applied(&self, room: RoomId) {
        let after = self.core.latest(room.as_str()).unwrap_or(Seq::ZERO);
        self.to_log(Job::Fetch { room, after });
    }

    /// What the shared log said.
    fn outcome(&mut self, now: Timestamp, outcome: Outcome) {
        match outcome {
            Outcome::Appended { id, room, result } => {
                let Some(tx) = self.appending.remove(&id) else {
                    return;
                };
                let reply = match result {
                    Ok((committed, message, duplicate)) => {
                        let _ = self.command(now, committed.into());
                        Ok(Reply::Submit(Submitted { message, duplicate }))
                    }
                    Err(AppendError::RoomGone) => {
                        // Deleted on another node (and the word of it lost): close it here too.
                        let gone = Committed {
                            gone: true,
                            ..Committed::of(room.clone(), 0)
                        };
                        let _ = self.command(now, gone.into());
                        Err(HubError::Refused(Error::RoomNotFound { room }))
                    }
                    Err(AppendError::Repaired) => Err(HubError::Unavailable(
                        "the room's log had gone back and was repaired (listeners were reset); \
                         nothing was posted: post again"
                            .into(),
                    )),
                    Err(AppendError::RateLimited(retry_after)) => {
                        Err(HubError::Refused(Error::RateLimited { retry_after }))
                    }
                    Err(AppendError::Standing(refused)) => {
                        // The log has a moderation this node has not applied yet: read it.
                        self.read_after_applied(room);
                        Err(HubError::Refused(refused))
                    }
                    Err(AppendError::Conflict(key, seq)) => {
                        Err(HubError::Refused(Error::IdempotencyConflict { key, seq }))
                    }
                    Err(AppendError::Unavailable(reason)) => {
                        tracing::warn!(%reason, "append failed");
                        Err(HubError::Unavailable(reason))
                    }
                };
                self.outputs.push(Output::Answer(reply, tx));
            }
            Outcome::Committed(committed) => {
                let _ = self.command(now, committed.into());
            }
            Outcome::CaughtUp(room) => self.caught_up(now, &room),
            Outcome::Listed { ticket, page } => {
                let Some(tx) = self.listing.remove(&ticket) else {
                    return;
                };
                let reply = page
                    .map(|mut page| {
                        // What only this node knows of the rooms it holds: its listeners, and
                        // when they were last active here.
                        for room in &mut page.rooms {
                            if let Some(here) = self.core.summary(room.id.as_str()) {
                                room.listeners = here.listeners;
                                room.last_active = room.last_active.max(here.last_active);
                            }
                        }
                        Reply::ListRooms(page)
                    })
                    .map_err(HubError::Unavailable);
                self.outputs.push(Output::Answer(reply, tx));
            }
            // A read brings the new epoch, which core applies as a reset.
            Outcome::EpochChanged(room) => self.read_after_applied(room),
            Outcome::AccessChanged(room) => {
                let history_len = self.core.config().history_len;
                self.to_log(Job::Load { room, history_len });
            }
            Outcome::Loaded {
                room,
                stored: Ok(Some(loaded)),
            } if self.core.holds(room.as_str()) => {
                // Read again because its access changed elsewhere.
                let access = Committed {
                    access: Some(loaded.stored.access),
                    ..Committed::of(room.clone(), loaded.stored.epoch)
                };
                let _ = self.command(now, access.into());
                for (command, tx) in self.loading.remove(&room).unwrap_or_default() {
                    self.request(now, command, tx, true);
                }
            }
            Outcome::Loaded { room, stored } => {
                let waiting = self.loading.remove(&room).unwrap_or_default();
                match stored {
                    Ok(Some(log::Loaded { stored, present })) => {
                        // Who is present on other nodes, before anyone opens a listener here;
                        // and a read at once of what was posted between the load and the
                        // subscription.
                        let (after, epoch) = (stored.latest, stored.epoch);
                        self.restore(now, stored);
                        let present = Committed {
                            present: Some(present),
                            ..Committed::of(room.clone(), epoch)
                        };
                        let _ = self.command(now, present.into());
                        self.to_log(Job::Fetch {
                            room: room.clone(),
                            after,
                        });
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        for (_, tx) in waiting {
                            let unavailable = Err(HubError::Unavailable(reason.clone()));
                            self.outputs.push(Output::Answer(unavailable, tx));
                        }
                        return;
                    }
                }
                let max = self.core.config().limits.max_rooms;
                for (command, tx) in waiting {
                    if self.core.holds(room.as_str()) {
                        self.request(now, command, tx, true);
                    } else if command.may_create() && self.cluster_rooms >= max {
                        // The cluster is full, whatever this node holds.
                        let full = Err(HubError::Refused(Error::TooManyRooms { max }));
                        self.outputs.push(Output::Answer(full, tx));
                    } else {
                        // Redis does not have it: core refuses, or creates it (and the writer
                        // stores it).
                        self.run_here(now, command, tx, false);
                    }
                }
            }
            Outcome::Missing { room, deleted } => {
                if deleted {
                    let gone = Committed {
                        gone: true,
                        ..Committed::of(room.clone(), 0)
                    };
                    let _ = self.command(now, gone.into());
                } else if let Some(summary) = self.core.summary(room.as_str()) {
                    let access = roomcast_core::Access {
                        owner: summary.owner,
                        private: summary.private,
                        members: summary.members.into_iter().collect(),
                        // Who moderates, and who is banned or muted, went with Redis's data.
                        ..roomcast_core::Access::default()
                    };
                    self.to_log(Job::Recreate {
                        room,
                        access,
                        created_at: summary.created_at,
                    });
                }
            }
            Outcome::Resubscribed => {
                self.read_all();
                // Revocations published while pub/sub was down were missed: read them all.
                if let Some(identity) = self.shared_identity.clone() {
                    std::thread::spawn(move || {
                        if let Err(e) = identity.reload_shared() {
                            tracing::warn!(error = %e, "cannot reload revocations");
                        }
                    });
                }
            }
            Outcome::Identity(event) => {
                let Some(identity) = &self.shared_identity else {
                    return;
                };
                match event {
                    IdentityEvent::Revoked(sid) => identity.on_revoked(&sid),
                    IdentityEvent::Registered { key, id } => identity.on_registered(&key, id),
                }
            }
            Outcome::Ids(start) => self.run_input(now, Input::RestoreMessageIds(start)),
            Outcome::Rooms(rooms) => self.cluster_rooms = rooms,
        }
    }

    /// Asks the shared log for every held room's entries after what is applied.
    fn read_all(&mut self) {
        let Some(redis) = self.log() else {
            return;
        };
        for (room, after) in self.core.heads() {
            let _ = redis.jobs.try_send(Job::Fetch {
                room: room.clone(),
                after,
            });
        }
        let _ = redis.jobs.try_send(Job::CountRooms);
    }

    /// Serves a room loaded from the shared log.
    fn restore(&mut self, now: Timestamp, stored: roomcast_core::StoredRoom) {
        self.run_input(now, Input::RestoreRoom(stored));
    }

    /// Runs an input that is not a command (a room read from the log, a new block of message
    /// ids) on the core, recording it, so a recording replays past it.
    fn run_input(&mut self, now: Timestamp, input: Input) {
        match &mut self.recorder {
            Some(recorder) => recorder.run(&mut self.core, now, input),
            None => drop(roomcast_core::record::run(&mut self.core, now, input)),
        }
    }

    /// Runs a command on the core and drains what it caused. Returns its answer.
    fn command(&mut self, now: Timestamp, command: Command) -> Result<Reply, Error> {
        let recorded = self
            .recorder
            .is_some()
            .then(|| Input::Command(command.clone()));
        let reply = self.core.handle(now, command);
        self.drain(now, recorded, Some(&reply));
        reply
    }

    /// Drains the core's events (the drain contract) into this step's durable batch and
    /// outputs, recording the step first if asked.
    fn drain(
        &mut self,
        now: Timestamp,
        recorded: Option<Input>,
        reply: Option<&Result<Reply, Error>>,
    ) {
        // `recorded` is set exactly when there is a recorder.
        if let (Some(recorder), Some(input)) = (&mut self.recorder, recorded) {
            let events: Vec<Event> = std::iter::from_fn(|| self.core.poll_event()).collect();
            recorder.write(now, input, reply, &events);
            for event in events {
                self.output(event);
            }
            return;
        }
        while let Some(event) = self.core.poll_event() {
            self.output(event);
        }
    }

    /// What one event becomes: a record for the store (if it is durable and there is one) and
    /// an output for the listeners.
    fn output(&mut self, event: Event) {
        if self.writer.as_ref().is_some_and(|w| w.keeps(&event)) {
            self.durable.push(event.clone());
        }
        if matches!(event, Event::RoomCreated { .. }) {
            self.cluster_rooms += 1;
        }
        let output = match event {
            Event::Published(message) => Output::Broadcast(
                message.room.clone(),
                Broadcast::Room(Delivery::Message(message.into())),
            ),
            Event::Joined { room, user } => {
                Output::Broadcast(room, Broadcast::Room(Delivery::Joined(user)))
            }
            Event::Left { room, user } => {
                Output::Broadcast(room, Broadcast::Room(Delivery::Left(user)))
            }
            Event::Typing { room, user } => {
                Output::Broadcast(room, Broadcast::Room(Delivery::Typing(user)))
            }
            Event::ListenerClosed {
                listener,
                room,
                reason,
            } => Output::Broadcast(room, Broadcast::Listener(listener, reason)),
            Event::RoomClosed { room, reason } => {
                // Deleted or expired, its files go with it.
                self.outputs.push(Output::DropFiles(room.clone(), None));
                match &reason {
                    RoomEnd::Deleted { by: Some(by) } => {
                        tracing::info!(%room, %by, "room deleted");
                    }
                    RoomEnd::Deleted { by: None } => tracing::info!(%room, "room deleted"),
                    RoomEnd::Expired => tracing::info!(%room, "room expired"),
                }
                Output::Close(room, reason.into())
            }
            Event::MemberRemoved { room, user } => {
                tracing::info!(%room, %user, "member removed");
                return;
            }
            // Kept (above); nobody else is told.
            Event::Read { .. } | Event::ReadForgotten { .. } => return,
            Event::AttachmentsDropped { room, attachments } => {
                Output::DropFiles(room, Some(attachments.into_iter().map(|a| a.id).collect()))
            }
            Event::Gap { room, gap } => {
                Output::Broadcast(room, Broadcast::Room(Delivery::Gap(gap)))
            }
            Event::Unloaded { room } => {
                if let Some(channel) = self.rooms.channels.remove(&room) {
                    channel.tx.close();
                }
                self.to_log(Job::Unsubscribe(room));
                return;
            }
            Event::Diverged { room, epoch } => {
                tracing::warn!(%room, epoch, "the shared log went back on this room; starting a new epoch");
                self.to_log(Job::NewEpoch { room, epoch });
                return;
            }
            Event::Here { room, user, here } => {
                self.to_log(Job::Here { room, user, here });
                return;
            }
            Event::Fetch { room, after } => {
                self.to_log(Job::Fetch { room, after });
                return;
            }
            // Stored, and seen by listeners through their answers and snapshots.
            Event::RoomCreated { .. } | Event::MemberAdded { .. } => return,
        };
        self.outputs.push(output);
    }

    /// Hands the step's durable events to the writer and releases its outputs, or holds them
    /// until the writer has committed them and everything before.
    fn end_step(&mut self) {
        let outputs = std::mem::take(&mut self.outputs);
        let durable = std::mem::take(&mut self.durable);
        let mut wrote = false;
        if let Some(writer) = &self.writer
            && !durable.is_empty()
        {
            if writer.write(durable).is_err() {
                // The writer is gone (stopping): nothing of this step may be acknowledged.
                return;
            }
            wrote = true;
        }
        let released = self.barrier.step(wrote, outputs);
        self.release(released);
    }

    fn release(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            output.release(&mut self.rooms, self.files.as_ref());
        }
    }

    /// Commits what is pending, stops the writer, releases everything held and ends every
    /// stream.
    fn stop(&mut self) {
        self.end_step();
        // This node's users leave now rather than when the others reap it.
        let (done, left) = std::sync::mpsc::channel();
        if self.to_log(Job::Leave(done)) {
            let _ = left.recv_timeout(std::time::Duration::from_secs(2));
        }
        if let Some(writer) = &mut self.writer {
            writer.close();
        }
        let released = self.barrier.flush();
        self.release(released);
        if let Some(recorder) = &mut self.recorder {
            recorder.flush();
        }
        self.rooms.end_all();
    }
}
