//! [`Hub`]: the thread that owns the core.
//!
//! Every request is a closure run on that thread against the core, so each answer is typed and
//! requests are processed one at a time in arrival order: opening a listener, its backlog and
//! its place in the room's broadcast happen in one step, which makes the handoff from backlog to
//! live gapless. Events go out through one `async_broadcast` channel per room, with overflow on:
//! the hub never waits for a listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use async_broadcast::{InactiveReceiver, Receiver, Sender};
use futures_lite::FutureExt;
use roomcast_core::{
    Config, Core, Error, Event, ListenerId, Opened, PresenceEntry, Resume, RoomId, Stats, Timestamp,
};
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

type Job = Box<dyn FnOnce(&mut Driver) + Send>;

/// A handle to the hub thread. Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Hub {
    jobs: async_channel::Sender<Job>,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stopping", &self.stopping)
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

impl Hub {
    /// Starts the hub thread with a fresh core.
    pub fn start(config: Config, options: HubOptions) -> std::io::Result<Hub> {
        let (jobs, job_rx) = async_channel::bounded::<Job>(options.queue.max(1));
        let (closes, close_rx) = async_channel::unbounded();
        let driver = Driver {
            core: Core::new(config),
            rooms: HashMap::new(),
            room_buffer: options.room_buffer.max(1),
            closes,
        };
        std::thread::Builder::new()
            .name("roomcast-hub".into())
            .spawn(move || async_io::block_on(driver.run(job_rx, close_rx)))?;
        Ok(Hub {
            jobs,
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs `f` against the core on the hub thread, with the current time, and returns its
    /// answer. Events it causes are broadcast before the next request runs.
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

    /// Ends every subscription with [`Ending::ShuttingDown`] and refuses further calls.
    pub async fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let job: Job = Box::new(|driver| driver.end_all(Ending::ShuttingDown));
        let _ = self.jobs.send(job).await;
    }

    /// Opens a listener; with `replacing`, also closes that one in the same step (a resync).
    pub(crate) async fn open(
        &self,
        user: String,
        room: String,
        resume: Resume,
        replacing: Option<ListenerId>,
    ) -> Result<Opening, HubError> {
        self.run(move |driver| driver.open(&user, &room, resume, replacing))
            .await?
            .map_err(HubError::Refused)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> T + Send + 'static,
    ) -> Result<T, HubError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(HubError::Stopped);
        }
        let (tx, rx) = async_channel::bounded(1);
        let job: Job = Box::new(move |driver| {
            let _ = tx.try_send(f(driver));
        });
        self.jobs.send(job).await.map_err(|_| HubError::Stopped)?;
        rx.recv().await.map_err(|_| HubError::Stopped)
    }
}

/// A room's broadcast channel. The inactive receiver keeps it open while nobody listens.
struct Room {
    tx: Sender<Delivery>,
    _keep_open: InactiveReceiver<Delivery>,
}

/// The state owned by the hub thread.
pub(crate) struct Driver {
    core: Core,
    rooms: HashMap<RoomId, Room>,
    room_buffer: usize,
    closes: async_channel::Sender<ListenerId>,
}

enum Input {
    Job(Job),
    Close(ListenerId),
    Timeout,
    Disconnected,
}

impl Driver {
    async fn run(
        mut self,
        jobs: async_channel::Receiver<Job>,
        closes: async_channel::Receiver<ListenerId>,
    ) {
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
            let close = async {
                closes
                    .recv()
                    .await
                    .map_or(Input::Disconnected, Input::Close)
            };
            let job = async { jobs.recv().await.map_or(Input::Disconnected, Input::Job) };
            match close.or(job).or(timer).await {
                Input::Job(job) => job(&mut self),
                Input::Close(listener) => {
                    self.core.close_listener(now(), listener);
                }
                Input::Timeout => self.core.handle_timeout(now()),
                // Every hub handle is gone (the driver's own close sender keeps `closes` open).
                Input::Disconnected => {
                    self.end_all(Ending::ShuttingDown);
                    return;
                }
            }
            self.pump();
        }
    }

    fn open(
        &mut self,
        user: &str,
        room: &str,
        resume: Resume,
        replacing: Option<ListenerId>,
    ) -> Result<Opening, Error> {
        // Open the new listener before closing the old, so presence does not flicker; unless
        // the room is full, where the old one's place is needed.
        let opened = match (
            self.core.open_listener(now(), user, room, resume),
            replacing,
        ) {
            (Err(Error::TooManyListeners { .. }), Some(old)) => {
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
        // The listener's own join goes to the others; it sees itself in the snapshot.
        self.pump();
        let presence = self.core.presence(user, room).unwrap_or_default();
        let buffer = self.room_buffer;
        let channel = self.rooms.entry(opened.room.clone()).or_insert_with(|| {
            let (mut tx, rx) = async_broadcast::broadcast(buffer);
            tx.set_overflow(true);
            tx.set_await_active(false);
            Room {
                tx,
                _keep_open: rx.deactivate(),
            }
        });
        let guard = ListenerGuard {
            closes: self.closes.clone(),
            listener: opened.listener,
        };
        Ok(Opening {
            receiver: channel.tx.new_receiver(),
            opened,
            presence,
            guard,
        })
    }

    /// Drains the core's events into the rooms' broadcasts (the drain contract).
    fn pump(&mut self) {
        while let Some(event) = self.core.poll_event() {
            let (room, delivery) = match event {
                Event::Published(message) => (message.room.clone(), Delivery::Message(message)),
                Event::Joined { room, user } => (room, Delivery::Joined(user)),
                Event::Left { room, user } => (room, Delivery::Left(user)),
                Event::RoomClosed { room, reason } => {
                    if let Some(channel) = self.rooms.remove(&room) {
                        let _ = channel
                            .tx
                            .try_broadcast(Delivery::Closed(Ending::from(reason)));
                        channel.tx.close();
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(channel) = self.rooms.get(&room) {
                // Never waits: with overflow on, a full buffer drops its oldest entry and the
                // listeners that had not read it resync from history.
                let _ = channel.tx.try_broadcast(delivery);
            }
        }
    }

    fn end_all(&mut self, ending: Ending) {
        for (_, channel) in self.rooms.drain() {
            let _ = channel.tx.try_broadcast(Delivery::Closed(ending.clone()));
            channel.tx.close();
        }
    }
}
