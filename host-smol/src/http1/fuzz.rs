//! The fuzz target's body (`fuzz/fuzz_targets/http1.rs` is a shim over [`run`]); `cargo test`
//! replays the committed corpus (`fuzz/corpus/http1/`) through it.
//!
//! Beyond "no panic", it checks what pipelining and trickling rely on: where a head ends (or
//! that it is refused) and what a chunked body decodes to do not depend on how the bytes were
//! split across reads, nor on how small the reader's buffer is.

use super::chunked::Chunked;
use super::head;

/// Runs one fuzz input: a byte that picks the read sizes, a byte for the reader's buffer
/// size, then the bytes a client sends. The head is found in them; the body is what follows
/// the first blank line (or all of it), decoded as chunked.
pub fn run(data: &[u8]) {
    let [seed, out, wire @ ..] = data else {
        return;
    };
    check(wire, u32::from(*seed), usize::from(*out).max(1));
}

/// Read sizes from 1 to 64, from a small deterministic generator.
fn read_sizes(seed: u32) -> impl Iterator<Item = usize> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some((state % 64) as usize + 1)
    })
}

fn check(wire: &[u8], seed: u32, out: usize) {
    // The head: found at once, and found read by read, alike.
    let at_once = head::find_end(wire, 0);
    let mut piecewise = Ok(None);
    let (mut have, mut scanned) = (0, 0);
    let mut sizes = read_sizes(seed);
    while have < wire.len() {
        have = (have + sizes.next().unwrap_or(1)).min(wire.len());
        piecewise = head::find_end(&wire[..have], scanned);
        if !matches!(piecewise, Ok(None)) {
            break;
        }
        scanned = have;
    }
    assert_eq!(
        at_once.as_ref().map_err(|r| r.code),
        piecewise.as_ref().map_err(|r| r.code)
    );
    let body = match at_once {
        Ok(Some(end)) => {
            if let Ok(parsed) = head::parse(&wire[..end]) {
                assert!(parsed.target.starts_with('/'));
                assert!(!parsed.host.is_empty());
            }
            &wire[end..]
        }
        _ => wire,
    };

    // The body: decoded at once into a large buffer, and read by read into a small one.
    let whole = decode(
        body,
        &mut std::iter::repeat(body.len().max(1)),
        body.len().max(1),
    );
    let pieces = decode(body, &mut read_sizes(seed), out);
    assert_eq!(whole, pieces);
}

/// Decodes `input` fed in reads of the given sizes through an output buffer of `out` bytes:
/// the body, how much input was used, and whether it ended; or the refusal.
fn decode(
    input: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
    out: usize,
) -> Result<(Vec<u8>, usize, bool), &'static str> {
    let mut decoder = Chunked::default();
    let mut body = Vec::new();
    let mut buffer = vec![0u8; out];
    let (mut used, mut have) = (0, 0);
    while !decoder.is_done() {
        if used == have {
            if have == input.len() {
                break;
            }
            have = (have + sizes.next().unwrap_or(1)).min(input.len());
        }
        let (n, written) = decoder
            .decode(&input[used..have], &mut buffer)
            .map_err(|r| r.code)?;
        assert!(n <= have - used && written <= buffer.len());
        body.extend_from_slice(&buffer[..written]);
        used += n;
    }
    Ok((body, used, decoder.is_done()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every input of the committed corpus, so CI exercises the fuzz target on stable.
    #[test]
    fn fuzz_corpus_replays_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/http1");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).expect("the http1 corpus is committed") {
            let data = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            super::run(&data);
            inputs += 1;
        }
        assert!(
            inputs >= 20,
            "a seeded corpus in {}: {inputs} inputs",
            dir.display()
        );
    }

    /// The target finds what it should on a plain request (so a broken harness cannot pass).
    #[test]
    fn the_target_reads_a_real_request() {
        super::run(b"\x07\x03POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        let decoded = super::decode(b"3\r\nabc\r\n0\r\n\r\n", &mut super::read_sizes(9), 2);
        assert_eq!(decoded, Ok((b"abc".to_vec(), 13, true)));
    }
}
