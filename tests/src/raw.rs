//! A raw HTTP/1.1 client over one socket, for what a client library will not send: pipelined
//! requests, lying framing, trickled bodies, a chosen source address (every 127/8 address
//! reaches the loopback server, so tests can be several clients on one machine).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::PATIENCE;
use crate::sse::{Head, read_head};

/// One connection, read response by response.
pub struct RawConn {
    reader: BufReader<TcpStream>,
}

/// A response read off a [`RawConn`].
#[derive(Debug)]
pub struct RawResponse {
    /// Status code and headers.
    pub head: Head,
    /// The body, decoded from its framing.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// A header's value (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} {}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a problem document with this status and code; returns it.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status(),
            status,
            "{:?} {}",
            self.head,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{:?}",
            self.head
        );
        let p = self.json();
        assert_eq!(p["code"], code, "{p}");
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "a problem names its cause: {p}"
        );
        p
    }
}

impl RawConn {
    /// Connects from the default loopback address.
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::wrap(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects from `from` (any 127/8 address), so the server sees another client address.
    pub fn connect_from(from: IpAddr, addr: SocketAddr) -> RawConn {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .expect("bind the source address");
        socket.connect(&addr.into()).expect("connect");
        RawConn::wrap(socket.into())
    }

    fn wrap(stream: TcpStream) -> RawConn {
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            reader: BufReader::new(stream),
        }
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads the next response: its head, then a body framed by Content-Length, chunked, or
    /// (with neither) running to the close.
    pub fn response(&mut self) -> io::Result<RawResponse> {
        let head = read_head(&mut self.reader)?;
        let mut body = Vec::new();
        if let Some(len) = head.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        } else if head
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim(), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..])?;
                let mut crlf = String::new();
                self.reader.read_line(&mut crlf)?;
                if size == 0 {
                    break;
                }
            }
        } else if !matches!(head.status, 100..=199 | 204 | 304) {
            self.reader.read_to_end(&mut body)?;
        }
        Ok(RawResponse { head, body })
    }

    /// Reads for up to `wait` and says whether the server closed the connection within it
    /// (anything it sent first is skipped).
    pub fn closes_within(&mut self, wait: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("timeout");
        let mut sink = [0u8; 4096];
        let closed = loop {
            match self.reader.read(&mut sink) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(PATIENCE))
            .expect("timeout");
        closed
    }
}

/// `GET path` as one request line and Host header (HTTP/1.1).
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: roomcast\r\n\r\n")
}
