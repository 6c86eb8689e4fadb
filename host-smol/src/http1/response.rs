//! Writing a response head. Every header name and value is checked as it is written: a value
//! holding CR, LF or any other control character (a redirect built from user input, say) is
//! never sent, so no response can carry a header it did not mean to.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{is_field_text, is_token};

/// How the body after the head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body and no length (1xx, 204, 304), or a switch of protocols.
    None,
    /// `Content-Length` (also for the answer to HEAD, which then sends no body).
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 streams).
    Chunked,
    /// Until the connection closes (HTTP/1.0 streams).
    UntilClose,
}

/// A response head about to be written.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    /// The status code.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'a str,
    /// The router's header fields (framing fields among them are ignored).
    pub headers: Vec<(&'a str, &'a str)>,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection closes after this response.
    pub close: bool,
}

/// Header fields the connection itself writes (`connection: upgrade` for a 101, `close` when
/// it closes after the response).
const FRAMING_FIELDS: [&str; 4] = ["content-length", "transfer-encoding", "connection", "date"];

impl ResponseHead<'_> {
    /// The head's bytes, and the names of header fields left out because they were invalid.
    pub fn encode(&self) -> (Vec<u8>, Vec<String>) {
        let mut out = String::with_capacity(256);
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, self.reason);
        let mut skipped = Vec::new();
        for (name, value) in &self.headers {
            if FRAMING_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
                continue;
            }
            if is_token(name.as_bytes()) && is_field_text(value.as_bytes()) {
                let _ = write!(out, "{name}: {value}\r\n");
            } else {
                skipped.push(name.escape_debug().to_string());
            }
        }
        let _ = write!(
            out,
            "date: {}\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        );
        match self.framing {
            BodyFraming::None => {}
            BodyFraming::Length(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
            }
            BodyFraming::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
            BodyFraming::UntilClose => {}
        }
        if self.status == 101 {
            out.push_str("connection: upgrade\r\n");
        } else if self.close || self.framing == BodyFraming::UntilClose {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        (out.into_bytes(), skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: Vec<(&'static str, &'static str)>, framing: BodyFraming) -> String {
        let (bytes, _) = ResponseHead {
            status: 303,
            reason: "See Other",
            headers,
            framing,
            close: false,
        }
        .encode();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn injected_lines_never_leave() {
        let text = head(
            vec![
                ("location", "/\r\nset-cookie: stolen=1"),
                ("x-ok", "fine"),
                ("bad name", "x"),
                ("content-length", "999"),
            ],
            BodyFraming::Length(0),
        );
        assert!(!text.contains("stolen"), "{text}");
        assert!(!text.contains("999"), "{text}");
        assert!(text.contains("x-ok: fine\r\n"));
        assert!(text.contains("content-length: 0\r\n"));
        assert!(text.starts_with("HTTP/1.1 303 See Other\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(text.matches("\r\n").count(), 5, "{text}");
    }
}
