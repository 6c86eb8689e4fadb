//! The roomcast core: a deterministic, IO-free state machine for chat rooms.
//!
//! It owns rooms, listeners, ordered broadcast, history, presence, limits and authorization, and
//! nothing else: no async, no clock, no sockets, no files, no threads, no randomness. Hosts own
//! all IO and drive it.
//!
//! # The contract
//!
//! - **Commands in, as data.** Every input is a value: one struct per command ([`Submit`],
//!   [`OpenListener`], ...), gathered in [`Command`] and passed to [`Core::handle`] with `now`,
//!   which the host reads from its clock once per step. [`Core::ask`] is the same call with the
//!   answer typed by the command. Time never runs backwards inside core: an older `now` counts
//!   as the newest seen. A recorded `(now, Command)` sequence replays to the same outputs.
//! - **Answers come back from the call.** The new message and its sequence number, a listener's
//!   backlog, a page of history, or an [`Error`] naming the rule that refused it. Queries
//!   ([`Core::history`], [`Core::list_rooms`], [`Core::room_view`]) also take `&self`.
//! - **Events out, addressed.** What others must hear is queued as an [`Event`]: to a room (a
//!   message published, a user joining or leaving, the room closing), once however many listen,
//!   or to one listener ([`Event::ListenerClosed`]). After **every** call, drain
//!   [`Core::poll_event`] until it returns `None`, and deliver each event to the listeners the
//!   host holds on [`Event::room`], or to the one it names.
//! - **Deadlines.** [`Core::poll_timeout`] says when [`Core::handle_timeout`] is next due
//!   (idle rooms expire, rate-limit state is freed); it may already be past. After calling it,
//!   drain events again.
//!
//! - **Durability.** A host that keeps history persists the events for which
//!   [`Event::is_durable`] holds, in the order they come, and releases events and answers only
//!   once what came before them is committed, so nobody sees what a crash could take back. On
//!   start it rebuilds core with [`Core::restore_room`] and [`Core::restore_message_ids`];
//!   numbering then continues where it stopped.
//!
//! Because one task owns the core and processes one call at a time, a listener opened by a call
//! receives its backlog from the answer and every later message as an event: no gap, no
//! duplicate.
//!
//! # A host loop
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::mpsc;
//! use std::time::{Duration, SystemTime};
//! use roomcast_core::{
//!     Command, Config, Core, CreateRoom, Event, ListenerId, OpenListener, Reply, Resume, Submit,
//!     Timestamp,
//! };
//!
//! /// What connection tasks send to the task that owns the core.
//! enum Request {
//!     Command(Command, mpsc::Sender<Result<Reply, roomcast_core::Error>>),
//!     /// A listener's outbox, registered right after it opened.
//!     Attach(ListenerId, String, mpsc::Sender<Event>),
//! }
//!
//! fn run(core: &mut Core, requests: mpsc::Receiver<Request>) {
//!     let mut outboxes: HashMap<String, Vec<(ListenerId, mpsc::Sender<Event>)>> = HashMap::new();
//!     loop {
//!         let wait = core.poll_timeout().map_or(Duration::from_secs(3600), |at| {
//!             at.saturating_since(Timestamp::from(SystemTime::now()))
//!         });
//!         let request = requests.recv_timeout(wait);
//!         // The time is read once per step.
//!         let now = Timestamp::from(SystemTime::now());
//!         match request {
//!             Ok(Request::Command(command, reply)) => {
//!                 let _ = reply.send(core.handle(now, command));
//!             }
//!             Ok(Request::Attach(id, room, outbox)) => outboxes.entry(room).or_default().push((id, outbox)),
//!             Err(mpsc::RecvTimeoutError::Timeout) => core.handle_timeout(now),
//!             Err(mpsc::RecvTimeoutError::Disconnected) => return,
//!         }
//!         // The drain contract: after every call, until None.
//!         while let Some(event) = core.poll_event() {
//!             let room = event.room().as_str().to_owned();
//!             match &event {
//!                 Event::RoomClosed { .. } => {
//!                     for (_, outbox) in outboxes.remove(&room).unwrap_or_default() {
//!                         let _ = outbox.send(event.clone());
//!                     }
//!                 }
//!                 // Addressed to one listener: only it hears.
//!                 Event::ListenerClosed { listener, .. } => {
//!                     let listeners = outboxes.entry(room).or_default();
//!                     if let Some(at) = listeners.iter().position(|(id, _)| id == listener) {
//!                         let _ = listeners.swap_remove(at).1.send(event.clone());
//!                     }
//!                 }
//!                 Event::RoomCreated { .. }
//!                 | Event::MemberAdded { .. }
//!                 | Event::MemberRemoved { .. }
//!                 | Event::Published(_)
//!                 | Event::Joined { .. }
//!                 | Event::Left { .. }
//!                 | Event::Typing { .. }
//!                 | Event::Gap { .. } => {
//!                     if let Some(listeners) = outboxes.get_mut(&room) {
//!                         // A real host uses bounded queues and turns overflow into a gap notice.
//!                         listeners.retain(|(_, outbox)| outbox.send(event.clone()).is_ok());
//!                     }
//!                 }
//!                 // For what keeps things: a read marker to store, uploads to let go of.
//!                 Event::Read { .. }
//!                 | Event::ReadForgotten { .. }
//!                 | Event::AttachmentsDropped { .. } => {}
//!                 // Only with a shared log (`log::Sequencer::Shared`): read it and hand back
//!                 // what it holds as `Committed`.
//!                 Event::Fetch { .. }
//!                 | Event::Here { .. }
//!                 | Event::Unloaded { .. }
//!                 | Event::Diverged { .. } => {}
//!             }
//!         }
//!     }
//! }
//!
//! let (tx, rx) = mpsc::channel();
//! let (reply_tx, reply_rx) = mpsc::channel();
//! let (events_tx, events_rx) = mpsc::channel();
//! let user = || "ada".to_string();
//! let create = CreateRoom { user: user(), room: "lobby".into(), private: false };
//! tx.send(Request::Command(create.into(), reply_tx.clone())).unwrap();
//! let open = OpenListener {
//!     user: user(),
//!     room: "lobby".into(),
//!     resume: Resume::Live,
//!     create_if_missing: false,
//!     replacing: None,
//! };
//! tx.send(Request::Command(open.into(), reply_tx.clone())).unwrap();
//! let mut core = Core::new(Config::default());
//! std::thread::scope(|s| {
//!     s.spawn(|| run(&mut core, rx));
//!     reply_rx.recv().unwrap().unwrap();
//!     let Ok(Reply::OpenListener(opened)) = reply_rx.recv().unwrap() else { panic!() };
//!     tx.send(Request::Attach(opened.listener, "lobby".into(), events_tx)).unwrap();
//!     let submit = Submit {
//!         user: user(),
//!         room: "lobby".into(),
//!         text: "hello 👋".into(),
//!         idempotency_key: None,
//!         create_if_missing: false,
//!         kind: Default::default(),
//!         recalled: None,
//!     };
//!     tx.send(Request::Command(submit.into(), reply_tx)).unwrap();
//!     let Event::Published(message) = events_rx.recv().unwrap() else { panic!() };
//!     assert_eq!((message.seq.0, message.text.as_str()), (1, "hello 👋"));
//!     drop(tx);
//! });
//! ```
//!
//! # Modules
//!
//! One concept each: [`ids`] names things, [`limits`] checks what clients send and holds the
//! token buckets, [`policy`] decides who may do what, [`record`] records and replays inputs;
//! the commands, events, errors and the engine (split by rooms, membership, listeners and
//! messages) are re-exported at the top. History, presence and rooms are internal and seen
//! through the answers ([`HistoryPage`], [`PresenceEntry`], [`RoomSummary`], [`RoomView`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod action;
mod command;
mod deadlines;
mod engine;
mod error;
mod event;
mod history;
pub mod ids;
pub mod limits;
pub mod log;
mod message;
pub mod policy;
mod presence;
mod read;
pub mod record;
mod room;
#[cfg(any(test, feature = "fuzzing"))]
pub mod sim;
mod time;

pub use command::{
    Ask, ChangeMember, CloseListener, Command, CreateRoom, Created, Cursor, DeleteRoom, Depart,
    Departed, History, HistoryPage, ListRooms, MarkRead, MemberChange, OpenDirect, OpenListener,
    Opened, Reply, Resume, RoomView, Submit, Submitted, Typing, Upload, ViewRoom,
};
pub use engine::{Config, Core, EXPIRE_BATCH, MAX_QUEUED_EVENTS, Stats};
pub use error::{
    AttachmentError, Error, ErrorClass, MembershipError, MessageError, ModerationError, NotAnEmoji,
    Paced,
};
pub use event::{CloseReason, Durable, Event, RoomEnd};
pub use history::Gap;
pub use ids::{
    GUEST_TAG, IdempotencyKey, ListenerId, MessageId, NameError, RoomId, Seq, USER_TAG_MAX_LEN,
    USER_TAG_SEPARATOR, UserId, UserName,
};
pub use limits::{Limits, Pace, RESERVE_HOLDS, RESERVE_PERCENT, Rate, RateLimiter, Refill};
pub use message::{
    ATTACHMENT_ID_LEN, Attachment, DEFAULT_MUTE_SECONDS, Emoji, Kind, Message, Moderation,
    Reaction, Standing, State,
};
pub use policy::{Action, Policy, Who};
pub use presence::PresenceEntry;
pub use read::{ReadMarker, Unread};
pub use room::{Access, RoomPage, RoomSummary, StoredRoom, TYPING_EVERY, TYPING_SHOWN_FOR};
pub use time::Timestamp;
