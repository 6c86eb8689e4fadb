//! A request head: found in the bytes read so far, parsed by `httparse`, then held to RFC 9112's
//! framing rules strictly. Anything a front proxy could read differently (bare LF, duplicate
//! lengths that disagree, a transfer coding other than `chunked`, both framings at once) is
//! refused and the connection closed, so no request can be smuggled past it.

use super::{Refusal, is_field_text};

/// Header lines a request may carry.
pub const MAX_HEADERS: usize = 64;

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no chunked bodies, the connection closes after the response.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed, checked request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, exactly as sent (methods are case-sensitive).
    pub method: String,
    /// The path and query (origin form; an absolute-form target is reduced to it).
    pub target: String,
    /// The authority the request is for: `Host`, or the absolute-form target's.
    pub host: String,
    /// The protocol version.
    pub version: Version,
    /// Header fields in order, names lower-cased, values ASCII with no control characters.
    pub headers: Vec<(String, String)>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expects_continue: bool,
}

impl RequestHead {
    /// The values of header `name` (lower-case), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Where the head in `buf` ends (just past its blank line), if it is all there. `scanned` is how
/// much of `buf` an earlier call already looked at. A line ending in a bare LF is refused at
/// once: RFC 9112 lets a recipient accept one, but a proxy in front may not, and that
/// difference is how requests are smuggled.
pub fn find_end(buf: &[u8], scanned: usize) -> Result<Option<usize>, Refusal> {
    let from = scanned.saturating_sub(3);
    for i in from..buf.len() {
        if buf[i] != b'\n' {
            continue;
        }
        if i == 0 || buf[i - 1] != b'\r' {
            return Err(Refusal::malformed(
                "lines must end with CRLF, not a bare LF",
            ));
        }
        if i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n" {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

/// How many empty lines (CRLF) `buf` starts with, in bytes: RFC 9112 §2.2 says to ignore them
/// before a request line (some clients send one after a body).
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    buf.chunks(2).take_while(|pair| *pair == b"\r\n").count() * 2
}

/// Parses and checks a complete head (as [`find_end`] delimited it).
pub fn parse(head: &[u8]) -> Result<RequestHead, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(Refusal::malformed("the request head is incomplete")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::head_too_large(format!(
                "more than {MAX_HEADERS} header lines"
            )));
        }
        Err(httparse::Error::Version) => return Err(version_refusal(head)),
        Err(e) => {
            return Err(Refusal::malformed(format!(
                "the request head is malformed: {e}"
            )));
        }
    }
    let method = request.method.unwrap_or_default().to_owned();
    let raw_target = request.path.unwrap_or_default();
    let version = match request.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(version_refusal(head)),
    };
    let mut headers = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let value = std::str::from_utf8(field.value)
            .ok()
            .filter(|v| is_field_text(v.as_bytes()))
            .ok_or_else(|| {
                Refusal::malformed(format!(
                    "header {} holds bytes that are not visible ASCII",
                    field.name
                ))
            })?;
        headers.push((field.name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut head = RequestHead {
        method,
        target: String::new(),
        host: String::new(),
        version,
        headers,
        framing: Framing::Length(0),
        close: version == Version::Http10,
        expects_continue: false,
    };
    let (authority, target) = target_of(raw_target)?;
    head.target = target;
    head.host = host_of(&head, authority)?;
    head.framing = framing(&head)?;
    head.close |= head.has_token("connection", "close");
    head.expects_continue = expectation(&head)?;
    Ok(head)
}

/// A version other than 1.0 and 1.1 (505), or a request line without one (400).
fn version_refusal(head: &[u8]) -> Refusal {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let third = line.split(|b| *b == b' ').nth(2).unwrap_or_default();
    if third.starts_with(b"HTTP/") {
        Refusal::new(
            505,
            "http-version-not-supported",
            "only HTTP/1.0 and HTTP/1.1 are spoken here (gRPC and HTTP/2 are on roomcast-tokio)",
        )
    } else {
        Refusal::malformed("the request line must be METHOD TARGET HTTP/1.1")
    }
}

/// The origin-form target, and the authority of an absolute-form one.
fn target_of(raw: &str) -> Result<(Option<&str>, String), Refusal> {
    if raw.starts_with('/') {
        return Ok((None, raw.to_owned()));
    }
    let absolute = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"));
    match absolute {
        Some(rest) => {
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(split);
            let path = match path {
                "" => "/".to_owned(),
                p if p.starts_with('?') => format!("/{p}"),
                p => p.to_owned(),
            };
            Ok((Some(authority), path))
        }
        None => Err(Refusal::malformed(format!(
            "the request target {raw:?} is not a path"
        ))),
    }
}

/// The authority the request names. HTTP/1.1 requires exactly one `Host` (RFC 9112 §3.2).
fn host_of(head: &RequestHead, authority: Option<&str>) -> Result<String, Refusal> {
    let mut hosts = head.values("host");
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => {
            return Err(Refusal::new(
                400,
                "missing-host",
                "a request must carry exactly one Host header, not several",
            ));
        }
        (Some(host), None) => host,
        (None, None) if head.version == Version::Http10 => "localhost",
        (None, None) => {
            return Err(Refusal::new(
                400,
                "missing-host",
                "an HTTP/1.1 request must carry a Host header",
            ));
        }
    };
    let host = authority.unwrap_or(host);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]!$&'()*+,;=%".contains(&b));
    if valid {
        Ok(host.to_owned())
    } else {
        Err(Refusal::malformed(format!("{host:?} is not a host")))
    }
}

/// How the body is delimited, refusing every ambiguity (RFC 9112 §6.1–6.3).
fn framing(head: &RequestHead) -> Result<Framing, Refusal> {
    let codings: Vec<&str> = head
        .values("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let lengths: Vec<&str> = head
        .values("content-length")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !codings.is_empty() {
        if head.version == Version::Http10 {
            return Err(Refusal::framing(
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        if !lengths.is_empty() {
            return Err(Refusal::framing(
                "a request must not carry both Content-Length and Transfer-Encoding",
            ));
        }
        return match codings.as_slice() {
            [coding] if coding.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(Refusal::framing(format!(
                "Transfer-Encoding {:?} is not supported: send `chunked`, or a Content-Length",
                codings.join(", ")
            ))),
        };
    }
    let mut length = None;
    for value in lengths {
        let parsed =
            (!value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    Refusal::framing(format!("Content-Length {value:?} is not a number of bytes"))
                })?;
        match length {
            Some(earlier) if earlier != parsed => {
                return Err(Refusal::framing(
                    "the request carries Content-Length twice, with different values",
                ));
            }
            _ => length = Some(parsed),
        }
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

/// Whether the client waits for `100 Continue`; any other expectation is refused (417).
fn expectation(head: &RequestHead) -> Result<bool, Refusal> {
    let mut expects = head.values("expect");
    match (expects.next(), expects.next()) {
        (None, _) => Ok(false),
        (Some(e), None) if e.eq_ignore_ascii_case("100-continue") => {
            Ok(head.version == Version::Http11)
        }
        _ => Err(Refusal::new(
            417,
            "expectation-failed",
            "the only expectation understood is Expect: 100-continue",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<RequestHead, Refusal> {
        let bytes = text.as_bytes();
        let end = find_end(bytes, 0)?.expect("a complete head");
        assert_eq!(end, bytes.len(), "the whole text is the head");
        parse(bytes)
    }

    fn refused(text: &str) -> (u16, &'static str) {
        let r = parsed(text).unwrap_err();
        (r.status, r.code)
    }

    #[test]
    fn a_plain_request() {
        let head =
            parsed("GET /api/v1/rooms?after=a HTTP/1.1\r\nHost: chat.example\r\nX-A: 1\r\n\r\n")
                .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/api/v1/rooms?after=a");
        assert_eq!(head.host, "chat.example");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.framing, Framing::Length(0));
        assert!(!head.close && !head.expects_continue);
        assert_eq!(head.values("x-a").collect::<Vec<_>>(), ["1"]);
    }

    #[test]
    fn the_end_is_found_across_reads_and_bare_lf_is_refused() {
        let text = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        assert_eq!(find_end(&text[..20], 0), Ok(None));
        assert_eq!(find_end(text, 20), Ok(Some(27)));
        assert!(find_end(b"GET / HTTP/1.1\nHost: x\n\n", 0).is_err());
        assert!(find_end(b"GET / HTTP/1.1\r\nHost: x\n\r\n", 0).is_err());
        assert_eq!(leading_empty_lines(b"\r\n\r\nGET"), 4);
        assert_eq!(leading_empty_lines(b"\r\nGET"), 2);
        assert_eq!(leading_empty_lines(b"GET"), 0);
    }

    #[test]
    fn framing_is_unambiguous_or_refused() {
        let with = |fields: &str| parsed(&format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n"));
        assert_eq!(
            with("Content-Length: 12\r\n").unwrap().framing,
            Framing::Length(12)
        );
        assert_eq!(
            with("Content-Length: 3\r\nContent-Length: 3\r\n")
                .unwrap()
                .framing,
            Framing::Length(3)
        );
        assert_eq!(
            with("Content-Length: 3, 3\r\n").unwrap().framing,
            Framing::Length(3)
        );
        assert_eq!(
            with("Transfer-Encoding: Chunked\r\n").unwrap().framing,
            Framing::Chunked
        );
        for bad in [
            "Content-Length: +19\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: \r\n",
            "Content-Length: 1 2\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Content-Length: 4\r\nContent-Length: 40\r\n",
            "Content-Length: 4, 40\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ] {
            let r = with(bad).unwrap_err();
            assert_eq!((r.status, r.code), (400, "bad-framing"), "{bad:?}");
        }
        let r = parsed("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err();
        assert_eq!(r.code, "bad-framing");
    }

    #[test]
    fn versions_hosts_targets_and_fields() {
        let v10 = parsed("GET /healthz HTTP/1.0\r\n\r\n").unwrap();
        assert!(v10.close, "HTTP/1.0 closes after the response");
        assert_eq!(v10.host, "localhost");
        assert_eq!(refused("GET / HTTP/2.0\r\nHost: x\r\n\r\n").0, 505);
        assert_eq!(refused("GET / HTTP/1.2\r\nHost: x\r\n\r\n").0, 505);
        assert_eq!(refused("GET /\r\n\r\n"), (400, "malformed-request"));
        assert_eq!(refused("GET / HTTP/1.1\r\n\r\n"), (400, "missing-host"));
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            (400, "missing-host")
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n").1,
            "malformed-request"
        );
        let absolute =
            parsed("GET http://chat.example:8080?x=1 HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(
            (absolute.host.as_str(), absolute.target.as_str()),
            ("chat.example:8080", "/?x=1")
        );
        assert_eq!(
            refused("GET * HTTP/1.1\r\nHost: x\r\n\r\n").1,
            "malformed-request"
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n").1,
            "malformed-request"
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: x\r\nX: caf\u{e9}\r\n\r\n").1,
            "malformed-request"
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n").1,
            "malformed-request"
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            (431, "head-too-large")
        );
        let closing =
            parsed("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n").unwrap();
        assert!(closing.close);
        let waiting = parsed(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
        assert!(waiting.expects_continue);
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n").0,
            417
        );
    }
}
