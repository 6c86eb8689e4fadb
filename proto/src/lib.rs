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

/// The fast server's codec: prost's, with a 1 KiB starting buffer per call instead of 8 KiB.
/// An idle stream keeps its encode buffer, so at ten thousand streams the default is 80 MB;
/// buffers still grow as a burst needs.
pub struct LeanCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(std::marker::PhantomData)
    }
}

/// The starting buffer of [`LeanCodec`].
const LEAN_BUFFER_BYTES: usize = 1024;

impl<T, U> tonic::codec::Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        // tonic's default yield threshold: frames go out once 32 KiB are encoded.
        let settings = tonic::codec::BufferSettings::new(LEAN_BUFFER_BYTES, 32 * 1024);
        tonic_prost::ProstCodec::<T, U>::raw_encoder(settings)
    }

    fn decoder(&mut self) -> Self::Decoder {
        let settings = tonic::codec::BufferSettings::new(LEAN_BUFFER_BYTES, 8 * 1024);
        tonic_prost::ProstCodec::<T, U>::raw_decoder(settings)
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
            event: Some(v1::stream_event::Event::Joined(v1::PresenceEntry {
                user: "ada".into(),
                user_id: "ada~q1".into(),
                listeners: 1,
            })),
        };
        let encoded = EncodedEvent::new(&event);
        assert_eq!(encoded.encode_to_vec(), event.encode_to_vec());
        assert_eq!(encoded.encoded_len(), event.encoded_len());
        let decoded = v1::StreamEvent::decode(&encoded.encode_to_vec()[..]).unwrap();
        assert_eq!(decoded, event);
    }
}
