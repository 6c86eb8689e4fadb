//! A Server-Sent Events client that parses the stream as the HTML EventSource specification
//! says a browser does (line endings, comments, `data` joining, `id`, `retry`), over a plain
//! socket with its own HTTP/1.1 and chunked decoding, so every read has a timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use crate::PATIENCE;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` type (`message` when absent).
    pub event: String,
    /// The joined `data:` lines.
    pub data: String,
    /// The last event ID in force when it was dispatched.
    pub last_event_id: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// A response's status line and headers.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Lower-cased header names and their values.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a status line and headers.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Head> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Ok(Head { status, headers })
}

/// Reads a body of the head's Content-Length (none if absent).
pub fn read_sized_body(reader: &mut impl Read, head: &Head) -> Vec<u8> {
    let len = head
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("the whole body");
    body
}

/// Decodes a chunked body.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            if self.inner.read_line(&mut size)? == 0 {
                return Ok(0);
            }
            let size = size.trim();
            let size = size.split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {size:?}"),
                )
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let len = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..len])?;
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

/// An open event stream.
pub struct SseStream {
    body: BufReader<Chunked<BufReader<Box<dyn Read + Send>>>>,
    event: String,
    data: String,
    id: String,
    /// The last `retry:` value seen, in milliseconds.
    pub retry: Option<u64>,
    /// Comments seen (heartbeats), counted.
    pub comments: usize,
    /// Response headers.
    pub head: Head,
}

/// Why a stream could not be opened: the server's answer.
#[derive(Debug)]
pub struct Refused {
    /// The status.
    pub status: u16,
    /// The body (a problem document).
    pub body: Value,
}

impl SseStream {
    /// Opens `path` on `addr` with exactly this bearer token.
    pub fn open_with_token(
        addr: SocketAddr,
        path: &str,
        token: &str,
    ) -> Result<SseStream, Refused> {
        SseStream::connect(addr, path, None, Some(format!("Bearer {token}")))
    }

    /// Opens `path` on `addr` with this bearer token, resuming after `last_event_id`.
    pub fn resume_with_token(
        addr: SocketAddr,
        path: &str,
        token: &str,
        last_event_id: &str,
    ) -> Result<SseStream, Refused> {
        SseStream::connect(
            addr,
            path,
            Some(last_event_id),
            Some(format!("Bearer {token}")),
        )
    }

    /// Opens `path` on `addr`, optionally with a `Last-Event-ID`, signed in as the user
    /// `?user=` names (or `anonymous`).
    pub fn open(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, Refused> {
        let auth = crate::authorization(&format!("http://{addr}{path}"), None);
        SseStream::connect(addr, path, last_event_id, auth)
    }

    fn connect(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
        authorization: Option<String>,
    ) -> Result<SseStream, Refused> {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        SseStream::open_over(stream, addr, path, last_event_id, authorization)
    }

    /// Opens `path` over a connection already made to `addr` (a TLS session, say).
    pub fn open_over(
        mut stream: impl Read + Write + Send + 'static,
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
        authorization: Option<String>,
    ) -> Result<SseStream, Refused> {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(auth) = authorization {
            request.push_str(&format!("Authorization: {auth}\r\n"));
        }
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("send request");
        let mut reader = BufReader::new(Box::new(stream) as Box<dyn Read + Send>);
        let head = read_head(&mut reader).expect("a response head");
        if head.status != 200 {
            let body =
                serde_json::from_slice(&read_sized_body(&mut reader, &head)).unwrap_or(Value::Null);
            return Err(Refused {
                status: head.status,
                body,
            });
        }
        assert!(
            head.header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "{:?}",
            head.header("content-type")
        );
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        let body = BufReader::new(Chunked {
            inner: reader,
            left: 0,
            done: false,
        });
        Ok(SseStream {
            body,
            event: String::new(),
            data: String::new(),
            id: String::new(),
            retry: None,
            comments: 0,
            head,
        })
    }

    /// The last event ID, as a reconnecting browser would send it.
    pub fn last_event_id(&self) -> &str {
        &self.id
    }

    /// The next event; `None` when the stream ends. Panics if nothing comes within the patience
    /// (heartbeat comments do not extend it).
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let deadline = std::time::Instant::now() + PATIENCE;
        let mut line = Vec::new();
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no event within the patience"
            );
            line.clear();
            // Lines end in LF, CR or CRLF.
            // The server closing or resetting the connection ends the stream.
            let n = match self.body.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("the stream broke: {e}"),
            };
            if n == 0 {
                return None;
            }
            let text = String::from_utf8(line.clone()).expect("UTF-8 stream");
            for raw in text.trim_end_matches('\n').split('\r') {
                if let Some(event) = self.line(raw) {
                    return Some(event);
                }
            }
        }
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.event.clear();
                return None;
            }
            let data = self
                .data
                .strip_suffix('\n')
                .unwrap_or(&self.data)
                .to_owned();
            let event = if self.event.is_empty() {
                "message".to_owned()
            } else {
                self.event.clone()
            };
            self.data.clear();
            self.event.clear();
            return Some(SseEvent {
                event,
                data,
                last_event_id: self.id.clone(),
            });
        }
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = value.to_owned(),
            "retry" => self.retry = value.parse().ok().or(self.retry),
            _ => {}
        }
        None
    }

    /// Reads heartbeat comments until `n` have been seen in all; an event meanwhile fails the
    /// test (the stream was to be idle), as does reaching the patience.
    pub fn wait_for_comments(&mut self, n: usize) {
        let deadline = std::time::Instant::now() + PATIENCE;
        let mut line = Vec::new();
        while self.comments < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no heartbeat within the patience"
            );
            line.clear();
            let read = self
                .body
                .read_until(b'\n', &mut line)
                .expect("the stream is open");
            assert!(read > 0, "the stream ended while idle");
            let text = String::from_utf8(line.clone()).expect("UTF-8 stream");
            for raw in text.trim_end_matches('\n').split('\r') {
                let event = self.line(raw);
                assert!(event.is_none(), "an event on an idle stream: {event:?}");
            }
        }
    }

    /// The next event of this type, skipping others.
    pub fn next_of(&mut self, kind: &str) -> Option<SseEvent> {
        loop {
            let event = self.next_event()?;
            if event.event == kind {
                return Some(event);
            }
        }
    }

    /// The sequence numbers of the next `n` messages.
    pub fn message_seqs(&mut self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                self.next_of("message").expect("a message").json()["seq"]
                    .as_u64()
                    .expect("seq")
            })
            .collect()
    }
}
