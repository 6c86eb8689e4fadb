//! Reading what servers send, cheaply: the generator must not be the bottleneck, so events are
//! not parsed as JSON; the two numbers it needs are found by substring.
//!
//! Every target sends messages whose JSON holds `"seq":N` and whose text starts `t=MICROS`
//! (the publish time it was due), so one scanner serves SSE, WebSocket, Socket.IO and the floor.

use std::sync::LazyLock;

use memchr::memmem;

/// What one event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A message: its room sequence number and when it was due to be published.
    Message { seq: u64, due_micros: Option<u64> },
    /// Messages before `first_held` are gone.
    Gap { first_held: u64 },
    /// The stream ended (`closed`).
    Closed,
    /// Presence and anything else.
    Other,
}

/// The digits right after `key` in `text`.
fn number_after(text: &[u8], key: &memmem::Finder<'static>) -> Option<u64> {
    let at = key.find(text)? + key.needle().len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Classifies one event's text (an SSE frame, a WebSocket text, a Socket.IO packet).
pub fn classify(event: &[u8]) -> Seen {
    static SEQ: LazyLock<memmem::Finder> = LazyLock::new(|| memmem::Finder::new("\"seq\":"));
    static DUE: LazyLock<memmem::Finder> = LazyLock::new(|| memmem::Finder::new("\"text\":\"t="));
    static FIRST_HELD: LazyLock<memmem::Finder> =
        LazyLock::new(|| memmem::Finder::new("\"first_held\":"));
    if let Some(seq) = number_after(event, &SEQ) {
        return Seen::Message {
            seq,
            due_micros: number_after(event, &DUE),
        };
    }
    if let Some(first_held) = number_after(event, &FIRST_HELD) {
        return Seen::Gap { first_held };
    }
    if memmem::find(event, b"\"type\":\"closed\"").is_some() {
        return Seen::Closed;
    }
    Seen::Other
}

/// Turns an HTTP/1.1 response body (chunked or not) into SSE frames.
#[derive(Default)]
pub struct SseFrames {
    chunked: bool,
    /// Bytes left in the current chunk, or `None` while reading a chunk-size line.
    in_chunk: Option<usize>,
    /// Received bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked bytes not yet split into frames.
    body: Vec<u8>,
    /// True once the terminating chunk arrived.
    pub ended: bool,
}

impl SseFrames {
    /// After a response head: is the body chunked?
    pub fn new(chunked: bool) -> Self {
        SseFrames {
            chunked,
            ..SseFrames::default()
        }
    }

    /// Takes bytes read from the socket; calls `each` with every whole frame now available.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&[u8])) {
        if self.chunked {
            self.raw.extend_from_slice(bytes);
            self.dechunk();
        } else {
            self.body.extend_from_slice(bytes);
        }
        let mut start = 0;
        while let Some(end) = memmem::find(&self.body[start..], b"\n\n") {
            each(&self.body[start..start + end]);
            start += end + 2;
        }
        self.body.drain(..start);
    }

    fn dechunk(&mut self) {
        let mut at = 0;
        loop {
            match self.in_chunk {
                Some(0) => {
                    // The CRLF after a chunk's data.
                    if self.raw.len() - at < 2 {
                        break;
                    }
                    at += 2;
                    self.in_chunk = None;
                }
                Some(left) => {
                    let take = left.min(self.raw.len() - at);
                    if take == 0 {
                        break;
                    }
                    self.body.extend_from_slice(&self.raw[at..at + take]);
                    at += take;
                    self.in_chunk = Some(left - take);
                }
                None => {
                    let Some(eol) = memmem::find(&self.raw[at..], b"\r\n") else {
                        break;
                    };
                    let size = std::str::from_utf8(&self.raw[at..at + eol])
                        .ok()
                        .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                    at += eol + 2;
                    match size {
                        Some(0) | None => {
                            self.ended = true;
                            at = self.raw.len();
                            break;
                        }
                        Some(n) => self.in_chunk = Some(n),
                    }
                }
            }
        }
        self.raw.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_gaps_and_others_are_told_apart() {
        let message = br#"id: 7
event: message
data: {"type":"message","id":"01","room":"r","seq":7,"user":"u","text":"t=1234 xx","sent_at":"x"}"#;
        assert_eq!(
            classify(message),
            Seen::Message {
                seq: 7,
                due_micros: Some(1234)
            }
        );
        assert_eq!(
            classify(br#"42["message",{"seq":3,"text":"t=99 x"}]"#),
            Seen::Message {
                seq: 3,
                due_micros: Some(99)
            }
        );
        assert_eq!(
            classify(br#"data: {"type":"gap","after":3,"first_held":10}"#),
            Seen::Gap { first_held: 10 }
        );
        assert_eq!(
            classify(br#"data: {"type":"closed","reason":"shutdown"}"#),
            Seen::Closed
        );
        assert_eq!(classify(b": keep-alive"), Seen::Other);
    }

    #[test]
    fn chunked_bodies_split_anywhere_give_the_same_frames() {
        let body = b"5\r\nab\n\nc\r\n3\r\nd\n\n\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut frames = SseFrames::new(true);
            let mut got = Vec::new();
            frames.push(&body[..split], |f| got.push(f.to_vec()));
            frames.push(&body[split..], |f| got.push(f.to_vec()));
            assert_eq!(
                got,
                vec![b"ab".to_vec(), b"cd".to_vec()],
                "split at {split}"
            );
            assert!(frames.ended);
        }
    }
}
