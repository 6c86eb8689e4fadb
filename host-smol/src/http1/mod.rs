//! The HTTP/1.1 wire of `roomcast-smol`, with no router in it: reading request heads and bodies
//! off a connection, and writing response heads.
//!
//! async-h1 (under tide) is unmaintained and was unsafe to expose: heads read without bound,
//! requests lost on kept-alive connections, ambiguous framing accepted. hyper 1.x is the
//! maintained alternative, but it holds two 8 KiB buffers for as long as a connection lives
//! (an idle event stream cost 15.3 KB under hyper against 2.4 KB here, measured with 5,000
//! streams), and answers malformed heads with a bare status. So the bytes are parsed by
//! `httparse` (hyper's own parser) and this module applies RFC 9112's framing rules on top,
//! strictly: anything ambiguous is refused with a problem that names the cause, and the
//! connection closed. The pure parts ([`head`], [`chunked`]) are fuzzed ([`fuzz`]).

pub mod chunked;
mod conn;
pub mod fuzz;
pub mod head;
mod response;

use std::time::Duration;

pub use conn::{After, BodyReader, Conn, Transport, linger_close};
pub use head::{Framing, RequestHead, Version};
pub use response::{BodyFraming, ResponseHead};

/// An RFC 9110 token (a header field's name).
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// Text a header field's value (or a chunk extension) may hold: visible ASCII, spaces and
/// tabs, and nothing else (no CR, LF, NUL or other control character).
fn is_field_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
}

/// How much a client may send, and how slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request head (request line and header fields), in bytes.
    pub max_head_bytes: usize,
    /// How long a request may take to arrive, head and body, from its first byte.
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a request was refused before it reached the router: the status, a stable code and what
/// was wrong. The connection closes after the answer, since what follows cannot be trusted to
/// be the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// A stable machine name.
    pub code: &'static str,
    /// What was wrong, for a person.
    pub detail: String,
}

impl Refusal {
    /// A refusal with this status, code and detail.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            detail: detail.into(),
        }
    }

    fn malformed(detail: impl Into<String>) -> Self {
        Refusal::new(400, "malformed-request", detail)
    }

    fn framing(detail: impl Into<String>) -> Self {
        Refusal::new(400, "bad-framing", detail)
    }

    fn head_too_large(detail: impl Into<String>) -> Self {
        Refusal::new(431, "head-too-large", detail)
    }

    fn body(detail: impl Into<String>) -> Self {
        Refusal::new(400, "malformed-body", detail)
    }
}
