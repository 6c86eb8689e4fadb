//! [`Hub`]: the thread that owns the core.
//!
//! Every request is a closure run on that thread against the core, so each answer is typed and
//! requests are processed one at a time in arrival order: opening a listener, its backlog and
//! its place in the room's broadcast happen in one step, which makes the handoff from backlog to
//! live gapless. Events go out through one `async_broadcast` channel per room, with overflow on:
//! the hub never waits for a listener.
//!
//! With a store, the hub is also the durability barrier. What each step must persist goes to
//! the store's writer as one batch; the step's outputs (deliveries, room closings, the answer,
//! a new listener's place in the broadcast) wait, in order, until that batch and every earlier
//! one is committed. So nobody is answered or shown anything a crash could take back, while the
//! core goes on with the next request and the writer commits many steps at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use async_broadcast::{InactiveReceiver, Receiver, Sender};
use futures_lite::FutureExt;
use roomcast_core::{
    CloseReason, Config, Core, Error, Event, ListenerId, Opened, PresenceEntry, Resume, RoomId,
    Stats, Timestamp,
};
use roomcast_store::{Journal, Record, Retention, Store};

use crate::identity::{Identity, IdentityError, IdentityOptions};
use thiserror::Error;

use crate::subscription::{Delivery, Ending};

/// Why a hub call did not return the core's answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HubError {
    /// The core refused the command.
    #[error(transparent)]
    Refused(#[from] Error),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

/// Tuning that belongs to the hub rather than the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubOptions {
    /// Deliveries buffered per room for its listeners. A listener further behind than this is
    /// resynced from history (default 1,024).
    pub room_buffer: usize,
    /// Requests waiting for the hub before callers wait to send (default 4,096).
    pub queue: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            room_buffer: 1024,
            queue: 4096,
        }
    }
}

/// A request, run on the hub thread; what it returns is released once its step is durable.
type Job = Box<dyn FnOnce(&mut Driver) -> Reply + Send>;
/// The answer to a request, sent when released. It may place a new receiver in a room's
/// broadcast, which must happen at exactly this point of the room's output.
type Reply = Box<dyn FnOnce(&mut Rooms) + Send>;

/// A handle to the hub thread. Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Hub {
    jobs: async_channel::Sender<Job>,
    stopping: Arc<AtomicBool>,
    store: Option<Arc<Store>>,
    identity: Arc<Identity>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stopping", &self.stopping)
            .field("store", &self.store.as_ref().map(|s| s.path().to_owned()))
            .finish_non_exhaustive()
    }
}

/// What the hub hands a new listener: the core's answer, who is present, its receiver, and
/// the guard that closes it. If the caller has gone by the time this arrives (its connection
/// dropped mid-request), dropping it closes the listener, so none is ever left behind.
pub(crate) struct Opening {
    pub(crate) opened: Opened,
    pub(crate) presence: Vec<PresenceEntry>,
    pub(crate) receiver: Receiver<Delivery>,
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

/// The hub's wall clock: the one place the server reads the time for the core.
pub(crate) fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// Why the hub could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
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
        let identity = Arc::new(Identity::new(
            identity,
            store.as_ref().map(|(store, _)| store.clone()),
        )?);
        let (jobs, job_rx) = async_channel::bounded::<Job>(options.queue.max(1));
        let (closes, close_rx) = async_channel::unbounded();
        let mut core = Core::new(config);
        let durability = match &store {
            None => None,
            Some((store, retention)) => {
                let restore = |source| StartError::Restore {
                    path: store.path().to_owned(),
                    source,
                };
                let loaded = store.load(core.config().history_len).map_err(restore)?;
                let (rooms, messages) = (loaded.rooms.len(), loaded.next_message_id);
                for room in loaded.rooms {
                    core.restore_room(now(), room);
                }
                core.restore_message_ids(loaded.next_message_id);
                tracing::info!(rooms, next_message_id = messages.0, path = %store.path().display(), "restored");
                Some(Durability {
                    journal: store.journal(*retention).map_err(restore)?,
                    written: 0,
                    durable: 0,
                    held: VecDeque::new(),
                })
            }
        };
        let driver = Driver {
            core,
            rooms: Rooms {
                channels: HashMap::new(),
                buffer: options.room_buffer.max(1),
            },
            closes,
            durability,
            records: Vec::new(),
            outputs: Vec::new(),
        };
        std::thread::Builder::new()
            .name("roomcast-hub".into())
            .spawn(move || async_io::block_on(driver.run(job_rx, close_rx)))?;
        Ok(Hub {
            jobs,
            stopping: Arc::new(AtomicBool::new(false)),
            store: store.map(|(store, _)| store),
            identity,
        })
    }

    /// Accounts, guests and tokens; signing in and up.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The store behind this hub, if history is durable.
    pub(crate) fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Runs `f` against the core on the hub thread, with the current time, and returns its
    /// answer once everything it changed is durable. Events it causes are broadcast before the
    /// next request's.
    pub async fn with_core<T, F>(&self, f: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Core, Timestamp) -> Result<T, Error> + Send + 'static,
    {
        self.run(move |driver| f(&mut driver.core, now()))
            .await?
            .map_err(HubError::Refused)
    }

    /// The core's counters.
    pub async fn stats(&self) -> Result<Stats, HubError> {
        self.run(|driver| driver.core.stats()).await
    }

    /// Ends every subscription with [`Ending::ShuttingDown`] and refuses further calls. With a
    /// store, returns once everything accepted is committed and the writer has stopped.
    pub async fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let (tx, rx) = async_channel::bounded(1);
        let job: Job = Box::new(move |driver| {
            driver.stop();
            Box::new(move |_| {
                let _ = tx.try_send(());
            })
        });
        if self.jobs.send(job).await.is_ok() {
            let _ = rx.recv().await;
        }
    }

    /// Opens a listener; with `replacing`, also closes that one in the same step (a resync).
    pub(crate) async fn open(
        &self,
        user: String,
        room: String,
        resume: Resume,
        replacing: Option<ListenerId>,
    ) -> Result<Opening, HubError> {
        self.call(move |driver| {
            let opening = driver.open(&user, &room, resume, replacing);
            move |rooms: &mut Rooms| opening.map(|place| place(rooms))
        })
        .await?
        .map_err(HubError::Refused)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> T + Send + 'static,
    ) -> Result<T, HubError> {
        self.call(move |driver| {
            let answer = f(driver);
            move |_: &mut Rooms| answer
        })
        .await
    }

    /// Sends a job whose answer is made when released (`make` runs then, against the rooms).
    async fn call<T: Send + 'static, M>(
        &self,
        f: impl FnOnce(&mut Driver) -> M + Send + 'static,
    ) -> Result<T, HubError>
    where
        M: FnOnce(&mut Rooms) -> T + Send + 'static,
    {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(HubError::Stopped);
        }
        let (tx, rx) = async_channel::bounded(1);
        let job: Job = Box::new(move |driver| {
            let make = f(driver);
            Box::new(move |rooms| {
                let _ = tx.try_send(make(rooms));
            })
        });
        self.jobs.send(job).await.map_err(|_| HubError::Stopped)?;
        rx.recv().await.map_err(|_| HubError::Stopped)
    }
}

/// A room's broadcast channel. The inactive receiver keeps it open while nobody listens.
struct Channel {
    tx: Sender<Delivery>,
    _keep_open: InactiveReceiver<Delivery>,
}

/// Every room's broadcast channel.
pub(crate) struct Rooms {
    channels: HashMap<RoomId, Channel>,
    buffer: usize,
}

impl Rooms {
    fn deliver(&mut self, room: &RoomId, delivery: Delivery) {
        if let Some(channel) = self.channels.get(room) {
            // Never waits: with overflow on, a full buffer drops its oldest entry and the
            // listeners that had not read it resync from history.
            let _ = channel.tx.try_broadcast(delivery);
        }
    }

    fn close(&mut self, room: &RoomId, ending: Ending) {
        if let Some(channel) = self.channels.remove(room) {
            let _ = channel.tx.try_broadcast(Delivery::Closed(ending));
            channel.tx.close();
        }
    }

    /// A receiver that gets everything broadcast to `room` from now on.
    fn receiver(&mut self, room: &RoomId) -> Receiver<Delivery> {
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

    fn end_all(&mut self, ending: &Ending) {
        for (_, channel) in self.channels.drain() {
            let _ = channel.tx.try_broadcast(Delivery::Closed(ending.clone()));
            channel.tx.close();
        }
    }
}

/// Something a step produced, released in order once the step is durable.
enum Output {
    Deliver(RoomId, Delivery),
    Close(RoomId, Ending),
    Reply(Reply),
}

impl Output {
    fn release(self, rooms: &mut Rooms) {
        match self {
            Output::Deliver(room, delivery) => rooms.deliver(&room, delivery),
            Output::Close(room, ending) => rooms.close(&room, ending),
            Output::Reply(reply) => reply(rooms),
        }
    }
}

/// The store's writer and the outputs waiting for it.
struct Durability {
    journal: Journal,
    /// Batches handed to the writer so far.
    written: u64,
    /// Batches the writer has committed so far.
    durable: u64,
    /// Outputs waiting for the batch count next to them to be durable, oldest first.
    held: VecDeque<(u64, Output)>,
}

/// The state owned by the hub thread.
pub(crate) struct Driver {
    core: Core,
    rooms: Rooms,
    closes: async_channel::Sender<ListenerId>,
    durability: Option<Durability>,
    /// What the current step must persist.
    records: Vec<Record>,
    /// What the current step produced.
    outputs: Vec<Output>,
}

enum Input {
    Job(Job),
    Close(ListenerId),
    Timeout,
    Durable(u64),
    Disconnected,
}

impl Driver {
    async fn run(
        mut self,
        jobs: async_channel::Receiver<Job>,
        closes: async_channel::Receiver<ListenerId>,
    ) {
        let committed = self
            .durability
            .as_ref()
            .map(|d| d.journal.committed().clone());
        loop {
            let deadline = self.core.poll_timeout();
            let timer = async {
                match deadline {
                    Some(at) => {
                        async_io::Timer::at(Instant::now() + at.saturating_since(now())).await;
                        Input::Timeout
                    }
                    None => std::future::pending().await,
                }
            };
            let durable = async {
                match &committed {
                    // The writer stops only when the hub closes it.
                    Some(rx) => match rx.recv().await {
                        Ok(n) => Input::Durable(n),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let close = async {
                closes
                    .recv()
                    .await
                    .map_or(Input::Disconnected, Input::Close)
            };
            let job = async { jobs.recv().await.map_or(Input::Disconnected, Input::Job) };
            match durable.or(close).or(job).or(timer).await {
                Input::Durable(n) => {
                    self.release(n);
                    continue;
                }
                Input::Job(job) => {
                    let reply = job(&mut self);
                    self.pump();
                    self.outputs.push(Output::Reply(reply));
                }
                Input::Close(listener) => {
                    self.core.close_listener(now(), listener);
                    self.pump();
                }
                Input::Timeout => {
                    self.core.handle_timeout(now());
                    self.pump();
                }
                // Every hub handle is gone (the driver's own close sender keeps `closes` open).
                Input::Disconnected => {
                    self.stop();
                    return;
                }
            }
            self.end_step();
        }
    }

    fn open(
        &mut self,
        user: &str,
        room: &str,
        resume: Resume,
        replacing: Option<ListenerId>,
    ) -> Result<impl FnOnce(&mut Rooms) -> Opening + Send + use<>, Error> {
        // Open the new listener before closing the old, so presence does not flicker; unless
        // the room (or the user's share of it) is full, where the old one's place is needed.
        let opened = match (
            self.core.open_listener(now(), user, room, resume),
            replacing,
        ) {
            (
                Err(
                    Error::TooManyListeners { .. }
                    | Error::TooManyUserListeners { .. }
                    | Error::ServerFull { .. },
                ),
                Some(old),
            ) => {
                self.core.close_listener(now(), old);
                self.core.open_listener(now(), user, room, resume)?
            }
            (result, _) => {
                let opened = result?;
                if let Some(old) = replacing {
                    self.core.close_listener(now(), old);
                }
                opened
            }
        };
        // The listener's own join goes to the others (its receiver is placed after it); it
        // sees itself in the snapshot.
        self.pump();
        let presence = self.core.presence(user, room).unwrap_or_default();
        let guard = ListenerGuard {
            closes: self.closes.clone(),
            listener: opened.listener,
        };
        Ok(move |rooms: &mut Rooms| Opening {
            receiver: rooms.receiver(&opened.room),
            opened,
            presence,
            guard,
        })
    }

    /// Drains the core's events (the drain contract) into this step's records and outputs.
    fn pump(&mut self) {
        while let Some(event) = self.core.poll_event() {
            if self.durability.is_some() {
                self.records.extend(Record::of(&event));
            }
            let output = match event {
                Event::Published(message) => {
                    Output::Deliver(message.room.clone(), Delivery::Message(message.into()))
                }
                Event::Joined { room, user } => Output::Deliver(room, Delivery::Joined(user)),
                Event::Left { room, user } => Output::Deliver(room, Delivery::Left(user)),
                // Ends that member's subscriptions (their listeners are closed already).
                Event::MemberRemoved { room, user } => {
                    tracing::info!(%room, %user, "member removed");
                    Output::Deliver(room, Delivery::Removed(user))
                }
                Event::RoomClosed { room, reason } => {
                    match &reason {
                        CloseReason::Deleted { by } => tracing::info!(%room, %by, "room deleted"),
                        CloseReason::Expired => tracing::info!(%room, "room expired"),
                    }
                    Output::Close(room, Ending::from(reason))
                }
                _ => continue,
            };
            self.outputs.push(output);
        }
    }

    /// Hands the step's records to the writer and releases its outputs, or holds them until
    /// the writer has committed them and everything before.
    fn end_step(&mut self) {
        let outputs = std::mem::take(&mut self.outputs);
        let records = std::mem::take(&mut self.records);
        let Some(d) = &mut self.durability else {
            for output in outputs {
                output.release(&mut self.rooms);
            }
            return;
        };
        if !records.is_empty() {
            if d.journal.write(records).is_err() {
                // The writer is gone (stopping): nothing of this step may be acknowledged.
                return;
            }
            d.written += 1;
        }
        if d.durable >= d.written && d.held.is_empty() {
            for output in outputs {
                output.release(&mut self.rooms);
            }
        } else {
            let at = d.written;
            d.held
                .extend(outputs.into_iter().map(|output| (at, output)));
        }
    }

    /// Releases the outputs whose batches are now committed.
    fn release(&mut self, durable: u64) {
        let Some(d) = &mut self.durability else {
            return;
        };
        d.durable = d.durable.max(durable);
        while d.held.front().is_some_and(|(at, _)| *at <= d.durable) {
            if let Some((_, output)) = d.held.pop_front() {
                output.release(&mut self.rooms);
            }
        }
    }

    /// Commits what is pending, stops the writer, releases everything held and ends every
    /// stream.
    fn stop(&mut self) {
        self.end_step();
        if let Some(d) = &mut self.durability {
            d.journal.close();
            let all = d.written;
            self.release(all);
        }
        self.rooms.end_all(&Ending::ShuttingDown);
    }
}
