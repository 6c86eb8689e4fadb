//! Decoding a chunked request body (RFC 9112 §7.1), strictly: every line ends in CRLF, a chunk
//! size is hex digits (with an optional extension of visible characters), the data is followed
//! by exactly CRLF, and trailer fields are bounded and discarded. Lenient chunk parsing (bare
//! LF in an extension, an empty size line) is a known way to smuggle a request past a proxy.

use super::{Refusal, is_field_text, is_token};

/// The longest chunk-size line, extension included.
const MAX_SIZE_LINE: usize = 1024;
/// The most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line into `line`.
    Size,
    /// This many data bytes left in the chunk.
    Data(u64),
    /// After the data: `0` bytes of its CRLF seen, or `1` (the CR).
    DataEnd(u8),
    /// Reading trailer lines into `line`; `seen` bytes of trailers so far.
    Trailers { seen: usize },
    /// The last chunk and the trailers' blank line have been read.
    Done,
}

/// A chunked-body decoder, fed whatever bytes arrive.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    line: Vec<u8>,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            line: Vec::new(),
        }
    }
}

impl Chunked {
    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` into `out`. Returns how many input bytes it used and how many body
    /// bytes it wrote; it stops when `out` is full, the input is used up, or the body ends.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), Refusal> {
        let (mut used, mut written) = (0, 0);
        while used < input.len() && self.state != State::Done {
            let rest = &input[used..];
            match self.state {
                State::Size => {
                    let (n, line_done) = take_line(&mut self.line, rest, MAX_SIZE_LINE)
                        .ok_or_else(|| Refusal::body("a chunk-size line is too long"))?;
                    used += n;
                    if line_done {
                        let size = chunk_size(&self.line)?;
                        self.line.clear();
                        self.state = if size == 0 {
                            State::Trailers { seen: 0 }
                        } else {
                            State::Data(size)
                        };
                    }
                }
                State::Data(left) => {
                    let room = out.len() - written;
                    if room == 0 {
                        break;
                    }
                    let n = rest
                        .len()
                        .min(room)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out[written..written + n].copy_from_slice(&rest[..n]);
                    used += n;
                    written += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd(0)
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd(seen) => {
                    let expected = b"\r\n"[usize::from(seen)];
                    if rest[0] != expected {
                        return Err(Refusal::body("chunk data must be followed by CRLF"));
                    }
                    used += 1;
                    self.state = if seen == 0 {
                        State::DataEnd(1)
                    } else {
                        State::Size
                    };
                }
                State::Trailers { seen } => {
                    let room = MAX_TRAILERS.saturating_sub(seen);
                    let (n, line_done) = take_line(&mut self.line, rest, room)
                        .ok_or_else(|| Refusal::body("the trailer fields are too long"))?;
                    used += n;
                    if line_done {
                        let blank = self.line == b"\r\n";
                        if !blank && !is_field_line(&self.line) {
                            return Err(Refusal::body("a trailer field is malformed"));
                        }
                        let seen = seen + self.line.len();
                        self.line.clear();
                        self.state = if blank {
                            State::Done
                        } else {
                            State::Trailers { seen }
                        };
                    }
                }
                State::Done => break,
            }
        }
        Ok((used, written))
    }
}

/// Appends bytes of `input` to `line` up to and including a LF. Returns how many it took and
/// whether the line is complete, or `None` if the line would exceed `max` bytes. A LF not
/// preceded by CR is left in the line for the caller's check to refuse.
fn take_line(line: &mut Vec<u8>, input: &[u8], max: usize) -> Option<(usize, bool)> {
    let (n, done) = match input.iter().position(|b| *b == b'\n') {
        Some(i) => (i + 1, true),
        None => (input.len(), false),
    };
    if line.len() + n > max {
        return None;
    }
    line.extend_from_slice(&input[..n]);
    Some((n, done))
}

/// The size in a chunk-size line (ending in its LF): hex digits first, then an optional
/// extension of visible characters, spaces and tabs, then CRLF.
fn chunk_size(line: &[u8]) -> Result<u64, Refusal> {
    let malformed = || Refusal::body("a chunk-size line is malformed");
    let body = line.strip_suffix(b"\r\n").ok_or_else(malformed)?;
    let starts_with_digit = body.first().is_some_and(u8::is_ascii_hexdigit);
    if !starts_with_digit || !is_field_text(body) {
        return Err(malformed());
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((_, size))) => Ok(size),
        _ => Err(malformed()),
    }
}

/// A trailer line: `name: value` CRLF, with a token name and no control characters.
fn is_field_line(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    let Some(colon) = body.iter().position(|b| *b == b':') else {
        return false;
    };
    is_token(&body[..colon]) && is_field_text(&body[colon + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed `step` bytes at a time into a small output buffer.
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), Refusal> {
        let mut decoder = Chunked::default();
        let mut body = Vec::new();
        let mut at = 0;
        let mut out = [0u8; 3];
        while at < input.len() && !decoder.is_done() {
            let end = (at + step).min(input.len());
            let mut fed = at;
            while fed < end && !decoder.is_done() {
                let (used, written) = decoder.decode(&input[fed..end], &mut out)?;
                body.extend_from_slice(&out[..written]);
                fed += used;
                if used == 0 && written == 0 {
                    break;
                }
            }
            at = fed;
        }
        Ok((body, at, decoder.is_done()))
    }

    #[test]
    fn bodies_decode_whatever_the_reads() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        for step in 1..input.len() {
            let (body, used, done) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello, world", "step {step}");
            assert!(done);
            assert_eq!(
                &input[used..],
                b"GET /next",
                "the next request is left alone"
            );
        }
        let (body, _, done) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!((body.len(), done), (10, true));
    }

    #[test]
    fn ambiguous_chunks_are_refused() {
        for bad in [
            &b"\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5;ext\nx\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
        ] {
            assert!(
                decode_all(bad, 1).is_err() && decode_all(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("5;{}\r\n", "e".repeat(2000));
        assert!(decode_all(long.as_bytes(), 64).is_err());
        let trailers = format!("0\r\n{}\r\n", "X: y\r\n".repeat(2000));
        assert!(decode_all(trailers.as_bytes(), 64).is_err());
    }
}
