//! A chat message as stored and published.

use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, MessageId, RoomId, Seq, UserName};
use crate::time::Timestamp;

/// An accepted message. Shared as `Arc<Message>` between history, events and every listener, so
/// publishing it copies nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique across rooms and time.
    pub id: MessageId,
    /// The room it was posted to.
    pub room: RoomId,
    /// Its position in the room: the previous message's plus one.
    pub seq: Seq,
    /// Who posted it.
    pub user: UserName,
    /// The text, checked against the limits, with `\r\n` normalized to `\n`.
    pub text: String,
    /// When core accepted it.
    pub sent_at: Timestamp,
    /// The key the poster gave so a retried submit finds this message again, if any.
    pub idempotency_key: Option<IdempotencyKey>,
}
