//! The async half that both roomcast hosts share, written once and runtime-agnostic.
//!
//! - [`Hub`]: one thread owns the [`Core`](roomcast_core::Core) and its timer; connection tasks
//!   on any runtime (smol, tokio) send it [`Command`](roomcast_core::Command)s, plain data, with
//!   [`Hub::ask`]. After every command it drains the core's events and broadcasts each one once
//!   per room (or to the one listener it names), released only once durable.
//! - [`Subscription`]: one listener's ordered stream of [`Delivery`]s: presence snapshot, gap
//!   notice, backlog, then live. A listener that falls more than the room buffer behind is
//!   resynced from history, so a slow client never holds up a room.
//! - [`CoreArgs`], [`edge`], [`telemetry`] and [`signal`]: the flags, the connection edge
//!   (file limit, backlog, connection cap, client addresses), logs, metrics and the shutdown
//!   signal, which both binaries take the same way; [`tls`]: their certificate, reloaded on
//!   SIGHUP.
//! - [`files`]: attachments' bytes, kept by content; [`Hub::upload`] keeps one once core
//!   allows it, and [`Hub::submit`] resolves the uploads a post names.
//! - [`identity`]: the `roomcast-identity` crate, re-exported for the hosts.
//! - `--record-inputs` writes what the core was given and answered; the `roomcast-replay`
//!   binary replays it ([`roomcast_core::record`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod barrier;
pub mod config;
mod delivery;
mod departures;
mod directory;
pub mod edge;
pub mod files;
mod history;
mod hub;
mod recheck;
mod recorder;
pub mod redis;
mod shared;
pub mod signal;
mod subscription;
pub mod telemetry;
pub mod tls;

/// Who is calling: accounts, guests and tokens (the `roomcast-identity` crate).
pub use roomcast_identity as identity;

pub use args::{CoreArgs, refuse_to_start};
pub use delivery::Delivery;
pub use hub::{Hub, HubError, HubOptions, StartError};
pub use redis::RedisOptions;
pub use shared::{Shared, Wire};
pub use subscription::Subscription;
