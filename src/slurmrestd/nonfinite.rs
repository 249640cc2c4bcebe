//! Bare `Infinity`, `-Infinity` and `NaN` in slurmrestd bodies.
//!
//! Up to Slurm 24.11 slurmrestd's JSON serializer (json-c) prints a
//! non-finite double as a bare literal, e.g. `/shares` of v0.0.40/v0.0.41
//! gives `"level": Infinity` for an association with no usage. That is not
//! JSON and serde_json rejects it, losing the whole response. Each such
//! literal outside strings is rewritten in place, at the same length, into
//! a string that [`super::number::Number`] reads as ±∞ / NaN:
//!
//! | literal     | becomes       |
//! |-------------|---------------|
//! | `Infinity`  | `"+inf  "`    |
//! | `-Infinity` | `"-inf   "`   |
//! | `NaN`       | `"N"`         |
//!
//! Two ways in:
//! * [`NonFinite`] wraps a reader (the small bodies read whole: `/shares`,
//!   `/partitions`, `/diag`). Nothing is copied beyond the reader's own
//!   buffer, except up to 8 bytes of a literal cut by the end of a read.
//!   It scans at ~2 GB/s (v0.0.44 `/jobs` on the dev VM);
//! * [`rewrite_in_place`] for the streaming scanner (`/jobs`, `/nodes`): it
//!   runs only on a buffered element serde_json has just rejected, so a
//!   well-formed body costs nothing (a 2 GB/s pass would cost the ~1.1 GB/s
//!   `/jobs` ingest a third of its speed).
//!
//! Anything else (an unknown bare word, text inside strings) stays
//! unchanged, so malformed JSON is still an error.

use std::io::{self, Read};

/// Longest literal (`-Infinity`).
const MAX_LIT: usize = 9;

const LITERALS: [(&[u8], &[u8]); 3] = [
    (b"-Infinity", b"\"-inf   \""),
    (b"Infinity", b"\"+inf  \""),
    (b"NaN", b"\"N\""),
];

/// String contents [`NonFinite`] writes, for the number reader.
pub(crate) fn marker_value(s: &str) -> Option<f64> {
    match s {
        "+inf  " => Some(f64::INFINITY),
        "-inf   " => Some(f64::NEG_INFINITY),
        "N" => Some(f64::NAN),
        _ => None,
    }
}

pub(crate) struct NonFinite<R> {
    inner: R,
    lexer: Lexer,
    /// Bytes of a possible literal held back from the previous read.
    held: [u8; MAX_LIT],
    held_len: usize,
    /// Rewritten bytes not yet handed out (only for callers with tiny buffers).
    ready: [u8; 2 * MAX_LIT],
    ready_pos: usize,
    ready_len: usize,
}

impl<R: Read> NonFinite<R> {
    pub(crate) fn new(inner: R) -> Self {
        NonFinite {
            inner,
            lexer: Lexer::default(),
            held: [0; MAX_LIT],
            held_len: 0,
            ready: [0; 2 * MAX_LIT],
            ready_pos: 0,
            ready_len: 0,
        }
    }

    /// Reads into `buf` (longer than [`MAX_LIT`]) and rewrites it.
    fn read_rewritten(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut n = self.held_len;
            buf[..n].copy_from_slice(&self.held[..n]);
            self.held_len = 0;
            let eof = loop {
                match self.inner.read(&mut buf[n..]) {
                    Ok(0) => break true,
                    Ok(k) => {
                        n += k;
                        break false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Nothing new was read: keep the held bytes for a retry.
                        self.hold_copy(buf, n);
                        return Err(e);
                    }
                }
            };
            let out = self.rewrite(&mut buf[..n], eof);
            if out > 0 || eof {
                return Ok(out);
            }
            // All read so far is a held-back literal prefix: read on.
        }
    }

    fn hold_copy(&mut self, buf: &[u8], n: usize) {
        self.held[..n].copy_from_slice(&buf[..n]);
        self.held_len = n;
    }
}

/// Whether `tail` (at the end of the bytes read) could be the start of a literal.
fn literal_prefix(tail: &[u8]) -> bool {
    !tail.is_empty()
        && LITERALS
            .iter()
            .any(|(lit, _)| lit.len() > tail.len() && lit.starts_with(tail))
}

impl<R: Read> Read for NonFinite<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.ready_pos < self.ready_len {
            let k = (self.ready_len - self.ready_pos).min(buf.len());
            buf[..k].copy_from_slice(&self.ready[self.ready_pos..self.ready_pos + k]);
            self.ready_pos += k;
            return Ok(k);
        }
        if buf.len() > MAX_LIT {
            return self.read_rewritten(buf);
        }
        // Too small to rewrite a literal in place: go through `ready`.
        let mut scratch = [0u8; 2 * MAX_LIT];
        let n = self.read_rewritten(&mut scratch)?;
        if n == 0 {
            return Ok(0);
        }
        self.ready = scratch;
        self.ready_pos = 0;
        self.ready_len = n;
        self.read(buf)
    }
}

/// String state of a scan over a JSON byte stream, from a value boundary.
#[derive(Debug, Default, Clone, Copy)]
struct Lexer {
    in_string: bool,
    /// The previous byte scanned was a backslash inside a string.
    escaped: bool,
}

/// What [`rewrite_in_place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InPlace {
    /// At least one literal was rewritten.
    pub changed: bool,
    /// `data` ends in what may be the start of a literal (outside strings):
    /// more bytes could make one.
    pub partial: bool,
}

/// Rewrites the literals of `data`, which starts at a value boundary
/// (outside any string), in place. For callers that hold a whole value (or
/// the start of one) in a buffer and only look here after serde_json
/// rejected it, so well-formed bodies never pay for the scan.
pub(crate) fn rewrite_in_place(data: &mut [u8]) -> InPlace {
    let mut changed = false;
    let ready = Lexer::default().rewrite(data, false, &mut changed);
    InPlace {
        changed,
        partial: ready < data.len(),
    }
}

impl Lexer {
    /// Rewrites literals in `data`, continuing from the saved string state;
    /// returns how many bytes are ready: all, or up to a trailing literal
    /// prefix (held back unless at EOF, and not scanned).
    fn rewrite(&mut self, data: &mut [u8], eof: bool, changed: &mut bool) -> usize {
        let mut i = 0;
        while i < data.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &data[i..]) {
                    None => return data.len(),
                    Some(k) => {
                        i += k;
                        if data[i] == b'"' {
                            self.in_string = false;
                        } else {
                            self.escaped = true;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match memchr::memchr3(b'"', b'I', b'N', &data[i..]) {
                None => {
                    // A trailing `-` may start `-Infinity`.
                    if !eof && data.last() == Some(&b'-') {
                        return data.len() - 1;
                    }
                    return data.len();
                }
                Some(k) => {
                    i += k;
                    if data[i] == b'"' {
                        self.in_string = true;
                        i += 1;
                        continue;
                    }
                    let start = if data[i] == b'I' && i > 0 && data[i - 1] == b'-' {
                        i - 1
                    } else {
                        i
                    };
                    let rest = &data[start..];
                    if let Some((lit, repl)) =
                        LITERALS.iter().find(|(lit, _)| rest.starts_with(lit))
                    {
                        data[start..start + lit.len()].copy_from_slice(repl);
                        *changed = true;
                        i = start + lit.len();
                    } else if !eof && literal_prefix(rest) {
                        return start;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        data.len()
    }
}

impl<R> NonFinite<R> {
    /// Rewrites `data` from the saved string state; returns how many bytes
    /// are ready, holding back a trailing literal prefix unless at EOF.
    fn rewrite(&mut self, data: &mut [u8], eof: bool) -> usize {
        let ready = self.lexer.rewrite(data, eof, &mut false);
        let tail = data.len() - ready;
        self.held[..tail].copy_from_slice(&data[ready..]);
        self.held_len = tail;
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `step` bytes per read.
    struct Steps<'a>(&'a [u8], usize);
    impl Read for Steps<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn through(body: &str, step: usize, out_buf: usize) -> String {
        let mut r = NonFinite::new(Steps(body.as_bytes(), step));
        let mut out = Vec::new();
        let mut buf = vec![0u8; out_buf];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rewrites_literals_outside_strings_only() {
        let body = r#"{"level": Infinity,"m":-Infinity, "n":[NaN,1,-1], "s":"Infinity \"NaN\\", "k":{"Infinity":NaN},"t":true}"#;
        let want = r#"{"level": "+inf  ","m":"-inf   ", "n":["N",1,-1], "s":"Infinity \"NaN\\", "k":{"Infinity":"N"},"t":true}"#;
        assert_eq!(body.len(), want.len());
        for step in 1..=body.len() {
            for out_buf in [1, 2, 9, 10, 11, 64, 8192] {
                assert_eq!(
                    through(body, step, out_buf),
                    want,
                    "step {step} buf {out_buf}"
                );
            }
        }
        let v: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(v["level"], "+inf  ");
    }

    #[test]
    fn other_bare_words_and_cut_literals_pass_unchanged() {
        for body in [
            "[Infinit]",
            "[Infinityy]",
            "[NaNa]",
            "[Inf",
            "[-",
            "[N",
            "[-Infinit",
            "[Nope, INFINITY, -x]",
        ] {
            let out = through(body, 3, 16);
            let want = body
                .replace("Infinityy", "\"+inf  \"y")
                .replace("NaNa", "\"N\"a");
            assert_eq!(out, want, "{body}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn read_errors_keep_held_bytes() {
        struct Flaky(u8);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                match self.0 {
                    1 => {
                        buf[..5].copy_from_slice(b"[Infi");
                        Ok(5)
                    }
                    2 => Err(io::Error::other("reset")),
                    3 => {
                        buf[..5].copy_from_slice(b"nity]");
                        Ok(5)
                    }
                    _ => Ok(0),
                }
            }
        }
        let mut r = NonFinite::new(Flaky(0));
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        let n = r.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        assert!(r.read(&mut buf).is_err());
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"[\"+inf  \"]");
    }
}
