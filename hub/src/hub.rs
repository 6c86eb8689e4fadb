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
use roomcast_core::record::Input;
use roomcast_core::{
    Ask, CloseListener, CloseReason, Command, Config, Core, Error, Event, History, HistoryPage,
    ListenerId, OpenListener, Opened, Reply, RoomId, Seq, Stats, Timestamp,
};
use roomcast_store::{Journal, Progress, Retention, Store};
use thiserror::Error;

use crate::barrier::Barrier;
use crate::delivery::{Broadcast, Delivery};
use crate::history;
use crate::identity::{Identity, IdentityError, IdentityOptions};
use crate::recorder::Recorder;

/// Why a hub call did not return the core's answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HubError {
    /// The core refused the command.
    #[error(transparent)]
    Refused(#[from] Error),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
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
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            room_buffer: 1024,
            queue: 4096,
            record_inputs: None,
        }
    }
}

/// A request to the hub thread: plain data, and where to send the answer.
enum Request {
    Command(Command, async_channel::Sender<Answer>),
    Stats(async_channel::Sender<Stats>),
    Shutdown(async_channel::Sender<()>),
}

/// The core's answer, released once durable. An opened listener comes with its receiver,
/// placed in the room's broadcast at exactly the point of the room's output where it opened,
/// and the guard that closes it: if the caller has gone by the time the answer arrives (its
/// connection dropped mid-request), dropping the answer closes the listener, so none is ever
/// left behind.
pub(crate) struct Answer {
    pub(crate) reply: Result<Reply, Error>,
    pub(crate) opened: Option<(Receiver<Broadcast>, ListenerGuard)>,
}

/// A handle to the hub thread. Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Hub {
    requests: async_channel::Sender<Request>,
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
        let identity = Arc::new(Identity::new(
            identity,
            store.as_ref().map(|(store, _)| store.clone()),
        )?);
        let (requests, request_rx) = async_channel::bounded(options.queue.max(1));
        let (closes, close_rx) = async_channel::unbounded();
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
        let journal = match &store {
            None => None,
            Some((store, retention)) => {
                let restore = |source| StartError::Restore {
                    path: store.path().to_owned(),
                    source,
                };
                let loaded = store.load(core.config().history_len).map_err(restore)?;
                let (rooms, messages) = (loaded.rooms.len(), loaded.next_message_id);
                for room in loaded.rooms {
                    step(&mut core, Input::RestoreRoom(room));
                }
                step(&mut core, Input::RestoreMessageIds(messages));
                tracing::info!(rooms, next_message_id = messages.0, path = %store.path().display(), "restored");
                Some(store.journal(*retention, now).map_err(restore)?)
            }
        };
        let driver = Driver {
            core,
            rooms: Rooms {
                channels: HashMap::new(),
                buffer: options.room_buffer.max(1),
                closes,
            },
            journal,
            barrier: Barrier::default(),
            recorder,
            durable: Vec::new(),
            outputs: Vec::new(),
        };
        std::thread::Builder::new()
            .name("roomcast-hub".into())
            .spawn(move || async_io::block_on(driver.run(request_rx, close_rx)))?;
        Ok(Hub {
            requests,
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

    /// Runs `command` on the core and returns its typed answer once everything it changed is
    /// durable. Events it causes are broadcast before the next command's.
    pub async fn ask<C: Ask>(&self, command: C) -> Result<C::Answer, HubError> {
        let answer = self.send(command.into()).await?;
        Ok(Self::typed::<C>(answer.reply)?)
    }

    /// The answer inside `reply`, typed by the command that asked.
    pub(crate) fn typed<C: Ask>(reply: Result<Reply, Error>) -> Result<C::Answer, Error> {
        // The core answers each command with the reply of the same name.
        reply.map(|reply| C::answer(reply).expect("core answers each command with its own reply"))
    }

    /// Sends a command and waits for its released answer.
    pub(crate) async fn send(&self, command: Command) -> Result<Answer, HubError> {
        self.request(|tx| Request::Command(command, tx)).await
    }

    /// Sends a request with a channel for its answer, and waits for the answer; refused once
    /// the hub is stopping.
    async fn request<T>(
        &self,
        make: impl FnOnce(async_channel::Sender<T>) -> Request,
    ) -> Result<T, HubError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(HubError::Stopped);
        }
        let (tx, rx) = async_channel::bounded(1);
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| HubError::Stopped)?;
        rx.recv().await.map_err(|_| HubError::Stopped)
    }

    /// A page of a room's history, oldest first: the core's answer, completed from the store
    /// where the ring ends.
    pub async fn history(&self, history: History) -> Result<HistoryPage, HubError> {
        let cursor = history.cursor;
        let page = self.ask(history).await?;
        let Some(store) = self.store().cloned() else {
            return Ok(page);
        };
        if page.first_held <= Seq(1) {
            return Ok(page); // The ring holds the whole room.
        }
        let fallback = page.clone();
        let extended = blocking::unblock(move || history::complete(&store, cursor, page)).await;
        Ok(extended.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading older history failed; answering from memory");
            fallback
        }))
    }

    /// Opens a listener (the command says on which room, for whom, from where, and whether it
    /// replaces one) and hands it over with its receiver.
    pub(crate) async fn open(&self, open: OpenListener) -> Result<Opening, HubError> {
        let answer = self.send(open.into()).await?;
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

    /// The core's counters.
    pub async fn stats(&self) -> Result<Stats, HubError> {
        self.request(Request::Stats).await
    }

    /// Ends every subscription with [`CloseReason::ShuttingDown`] and refuses further calls.
    /// With a store, returns once everything accepted is committed and the writer has stopped.
    pub async fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let (tx, rx) = async_channel::bounded(1);
        if self.requests.send(Request::Shutdown(tx)).await.is_ok() {
            let _ = rx.recv().await;
        }
    }
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
    Answer(Result<Reply, Error>, async_channel::Sender<Answer>),
    Stats(Stats, async_channel::Sender<Stats>),
}

impl Output {
    fn release(self, rooms: &mut Rooms) {
        match self {
            Output::Broadcast(room, broadcast) => rooms.broadcast(&room, broadcast),
            Output::Close(room, reason) => rooms.close(&room, reason),
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

/// The state owned by the hub thread.
struct Driver {
    core: Core,
    rooms: Rooms,
    journal: Option<Journal>,
    barrier: Barrier<Output>,
    recorder: Option<Recorder>,
    /// What the current step must persist.
    durable: Vec<Event>,
    /// What the current step produced.
    outputs: Vec<Output>,
}

/// What woke the hub thread.
enum Wake {
    Request(Request),
    Close(ListenerId),
    Timeout,
    Progress(Progress),
    Disconnected,
}

/// The exit code when the store fails (EX_IOERR).
const EXIT_STORAGE_FAILED: i32 = 74;

impl Driver {
    async fn run(
        mut self,
        requests: async_channel::Receiver<Request>,
        closes: async_channel::Receiver<ListenerId>,
    ) {
        let progress = self.journal.as_ref().map(|j| j.progress().clone());
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
            let close = async { closes.recv().await.map_or(Wake::Disconnected, Wake::Close) };
            let request = async {
                requests
                    .recv()
                    .await
                    .map_or(Wake::Disconnected, Wake::Request)
            };
            let wake = durable.or(close).or(request).or(timer).await;
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
                    let reply = self.command(now, command);
                    self.outputs.push(Output::Answer(reply, tx));
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
        if self.journal.is_some() && event.is_durable() {
            self.durable.push(event.clone());
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
            Event::ListenerClosed {
                listener,
                room,
                reason,
            } => Output::Broadcast(room, Broadcast::Listener(listener, reason)),
            Event::RoomClosed { room, reason } => {
                match &reason {
                    CloseReason::Deleted { by: Some(by) } => {
                        tracing::info!(%room, %by, "room deleted");
                    }
                    CloseReason::Deleted { by: None } => tracing::info!(%room, "room deleted"),
                    CloseReason::Expired => tracing::info!(%room, "room expired"),
                    CloseReason::Removed | CloseReason::Refused(_) | CloseReason::ShuttingDown => {}
                }
                Output::Close(room, reason)
            }
            Event::MemberRemoved { room, user } => {
                tracing::info!(%room, %user, "member removed");
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
        if let Some(journal) = &self.journal
            && !durable.is_empty()
        {
            if journal.write(durable).is_err() {
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
            output.release(&mut self.rooms);
        }
    }

    /// Commits what is pending, stops the writer, releases everything held and ends every
    /// stream.
    fn stop(&mut self) {
        self.end_step();
        if let Some(journal) = &mut self.journal {
            journal.close();
        }
        let released = self.barrier.flush();
        self.release(released);
        if let Some(recorder) = &mut self.recorder {
            recorder.flush();
        }
        self.rooms.end_all();
    }
}
