//! [`Shared`]: a published message as all of its listeners share it.
//!
//! A room with a thousand listeners would otherwise turn the same message into the same bytes
//! a thousand times. Each wire format's encoding is made once, by the first listener that
//! needs it, and every other listener writes those same bytes.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use roomcast_core::Message;

/// The encodings a message is sent in; one cached encoding each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A Server-Sent Events frame.
    Sse,
    /// A WebSocket text frame's payload.
    WebSocket,
    /// An encoded protobuf `StreamEvent`.
    Grpc,
}

impl Wire {
    /// The transport's name in metrics: `sse`, `ws` or `grpc`.
    pub fn label(self) -> &'static str {
        match self {
            Wire::Sse => "sse",
            Wire::WebSocket => "ws",
            Wire::Grpc => "grpc",
        }
    }
}

/// A message and its encodings, behind one `Arc`: cloning it per listener is a reference count.
#[derive(Clone)]
pub struct Shared(Arc<Inner>);

struct Inner {
    message: Arc<Message>,
    encoded: [OnceLock<Bytes>; 3],
}

impl Shared {
    /// The message's bytes in `wire`'s format: encoded by `encode` on first use, then shared.
    /// Every caller for one `wire` must encode the same way.
    pub fn encoded(&self, wire: Wire, encode: impl FnOnce(&Message) -> Bytes) -> Bytes {
        self.0.encoded[wire as usize]
            .get_or_init(|| encode(&self.0.message))
            .clone()
    }

    /// The message itself.
    pub fn message(&self) -> &Arc<Message> {
        &self.0.message
    }
}

impl From<Arc<Message>> for Shared {
    fn from(message: Arc<Message>) -> Self {
        Shared(Arc::new(Inner {
            message,
            encoded: Default::default(),
        }))
    }
}

impl Deref for Shared {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.0.message
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        self.0.message == other.0.message
    }
}

impl Eq for Shared {}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.message.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_core::{MessageId, RoomId, Seq, Timestamp, UserId};
    use std::cell::Cell;

    #[test]
    fn each_wire_is_encoded_once_and_shared() {
        let message = Arc::new(Message {
            id: MessageId(1),
            room: RoomId::parse("lobby", 64).expect("valid"),
            seq: Seq(7),
            user: UserId::parse("ada", 32).expect("valid"),
            text: "hi".into(),
            sent_at: Timestamp::EPOCH,
            idempotency_key: None,
            kind: Default::default(),
            state: Default::default(),
        });
        let shared = Shared::from(message);
        let copy = shared.clone();
        let calls = Cell::new(0);
        let encode = |m: &Message| {
            calls.set(calls.get() + 1);
            Bytes::from(format!("{}:{}", m.seq, m.text))
        };
        assert_eq!(shared.encoded(Wire::Sse, encode), "7:hi");
        assert_eq!(copy.encoded(Wire::Sse, encode), "7:hi");
        assert_eq!(calls.get(), 1);
        assert_eq!(copy.encoded(Wire::Grpc, |_| Bytes::from_static(b"g")), "g");
        assert_eq!(copy.seq, Seq(7));
    }
}
