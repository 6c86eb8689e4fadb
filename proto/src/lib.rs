//! roomcast's gRPC schema, package `roomcast.v1`: the messages, the `Chat` service's server
//! trait and its client, generated at build time from `roomcast/v1/chat.proto`.
#![allow(missing_docs, clippy::all)]

/// The `roomcast.v1` package.
pub mod v1 {
    tonic::include_proto!("roomcast.v1");
}

/// The `Chat` service's server trait with its fast `Stream`: the server implements this one.
/// Its `Stream` yields [`EncodedEvent`]s; every other message is the one in [`v1`].
pub mod fast {
    include!(concat!(env!("OUT_DIR"), "/fast/roomcast.v1.rs"));
}

/// A `roomcast.v1.StreamEvent` already encoded: sending it copies its bytes. A message's event
/// is encoded once and the same bytes go to every stream; the server never decodes one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedEvent(pub bytes::Bytes);

impl EncodedEvent {
    /// Encodes `event`.
    pub fn new(event: &v1::StreamEvent) -> Self {
        EncodedEvent(prost::Message::encode_to_vec(event).into())
    }
}

impl prost::Message for EncodedEvent {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only ever sent: a decoder skips what it is given.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The encoded file descriptors, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roomcast_descriptor.bin"));

/// The metadata key older clients named themselves with: now refused if it names anyone but
/// the token's user.
pub const USER_METADATA: &str = "roomcast-user";
/// The metadata key that carries `Bearer <token>`.
pub const AUTHORIZATION_METADATA: &str = "authorization";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn an_encoded_event_sends_exactly_the_event_it_was_made_from() {
        let event = v1::StreamEvent {
            event: Some(v1::stream_event::Event::Joined("ada".into())),
        };
        let encoded = EncodedEvent::new(&event);
        assert_eq!(encoded.encode_to_vec(), event.encode_to_vec());
        assert_eq!(encoded.encoded_len(), event.encoded_len());
        let decoded = v1::StreamEvent::decode(&encoded.encode_to_vec()[..]).unwrap();
        assert_eq!(decoded, event);
    }
}
