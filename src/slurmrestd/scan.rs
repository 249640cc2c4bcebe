//! Fast streaming of one top-level array member (`jobs`) out of a response.
//!
//! `serde_json::Deserializer::from_reader` reads a byte at a time through
//! `io::Bytes`, which caps it near 250 MB/s whatever the buffer size. Here the
//! body is read into a large buffer and each array element is deserialized
//! straight from it with serde_json's slice reader, several times faster; an
//! element cut by the end of the buffer fails with an EOF error and is parsed
//! again once more bytes are in. The top level (member names, `errors`, the
//! members this exporter skips) goes through a byte scanner that finds where
//! each value ends, and each is then checked with `from_slice`, so malformed
//! JSON anywhere is still an error, as it is with `from_reader`.
//!
//! Memory stays bounded: the buffer holds one element (a job is ~16 KB) plus
//! one read chunk, and no value may exceed [`MAX_VALUE`].

use std::borrow::Cow;
use std::io::{ErrorKind, Read};

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};

use super::nonfinite;

/// Bytes asked of the reader at a time.
const CHUNK: usize = 256 * 1024;

/// Bytes to have in the buffer before parsing an element, at first; then
/// twice the largest element seen, up to [`CHUNK`]. Enough that few elements
/// are cut by the end of the buffer, small enough that the first jobs reach
/// the sink while the body is still arriving.
const FIRST_LOOKAHEAD: usize = 16 * 1024;

/// Largest single value (one job, or one skipped top-level member). A job
/// with a 1,000-node allocation listing is ~10 MB; this leaves room while
/// keeping a hostile body from growing the buffer without bound.
pub(crate) const MAX_VALUE: usize = 64 << 20;

type Result<T> = std::result::Result<T, serde_json::Error>;

fn syntax(msg: &str, at: u64) -> serde_json::Error {
    serde_json::Error::custom(format_args!("{msg} at byte {at}"))
}

pub(crate) struct Scanner<'r> {
    r: &'r mut dyn Read,
    buf: Vec<u8>,
    /// First unconsumed byte.
    start: usize,
    /// End of the bytes read.
    end: usize,
    eof: bool,
    /// Body offset of `buf[0]`, for error messages.
    offset: u64,
    lookahead: usize,
    /// [`MAX_VALUE`], smaller in tests.
    max_value: usize,
}

impl<'r> Scanner<'r> {
    pub(crate) fn new(r: &'r mut dyn Read) -> Self {
        Scanner {
            r,
            buf: Vec::new(),
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            lookahead: FIRST_LOOKAHEAD,
            max_value: MAX_VALUE,
        }
    }

    /// Deserializes the next value (after whitespace) as a `T` straight from
    /// the buffer, reading on while it is cut by the end of the bytes read.
    fn element<T: DeserializeOwned>(&mut self) -> Result<T> {
        loop {
            while self.end - self.start < self.lookahead && self.fill()? {}
            let data = &self.buf[self.start..self.end];
            let mut values = serde_json::Deserializer::from_slice(data).into_iter::<T>();
            match values.next() {
                Some(Ok(v)) => {
                    let n = values.byte_offset();
                    self.start += n;
                    self.lookahead = self.lookahead.max(n.saturating_mul(2)).min(CHUNK);
                    return Ok(v);
                }
                Some(Err(e)) if e.is_eof() && !self.eof => {
                    // Cut short: have more than now before trying again.
                    let have = self.end - self.start;
                    if have > self.max_value {
                        return Err(self.too_large());
                    }
                    self.lookahead = have + have.max(4096);
                }
                Some(Err(e)) => {
                    // Bare `Infinity`/`NaN` (Slurm <= 24.11) are rewritten only
                    // now, after serde_json refused the element, so
                    // well-formed bodies never pay for the scan.
                    let fix = nonfinite::rewrite_in_place(&mut self.buf[self.start..self.end]);
                    if fix.changed {
                        continue;
                    }
                    if fix.partial && !self.eof {
                        let have = self.end - self.start;
                        if have > self.max_value {
                            return Err(self.too_large());
                        }
                        self.lookahead = have + 1;
                        continue;
                    }
                    return Err(e);
                }
                None if self.eof => {
                    return Err(syntax(
                        "EOF while parsing a value",
                        self.pos() + data.len() as u64,
                    ))
                }
                None => self.lookahead = self.end - self.start + 1,
            }
        }
    }

    fn too_large(&self) -> serde_json::Error {
        syntax(
            &format!("a value larger than {} bytes", self.max_value),
            self.pos(),
        )
    }

    fn pos(&self) -> u64 {
        self.offset + self.start as u64
    }

    /// Reads more bytes after `end`, keeping `start..end`. False at EOF.
    fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 && self.buf.len() - self.end < CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.offset += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < CHUNK {
            if self.end - self.start > self.max_value {
                return Err(self.too_large());
            }
            let want = (self.end + CHUNK).max(self.buf.len() * 2).max(CHUNK);
            self.buf.resize(want, 0);
        }
        loop {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(serde_json::Error::io(e)),
            }
        }
    }

    /// Skips whitespace; the next byte, not consumed, or `None` at EOF.
    pub(crate) fn peek(&mut self) -> Result<Option<u8>> {
        loop {
            while self.start < self.end {
                let c = self.buf[self.start];
                if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                    return Ok(Some(c));
                }
                self.start += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Consumes `c` after optional whitespace.
    pub(crate) fn expect(&mut self, c: u8, what: &str) -> Result<()> {
        match self.peek()? {
            Some(x) if x == c => {
                self.start += 1;
                Ok(())
            }
            Some(_) => Err(syntax(&format!("expected {what}"), self.pos())),
            None => Err(syntax(&format!("EOF while expecting {what}"), self.pos())),
        }
    }

    /// The bytes of the next complete JSON value (after whitespace), consumed.
    /// Only its extent is checked here; `from_slice` checks its content.
    pub(crate) fn value(&mut self) -> Result<&[u8]> {
        let first = match self.peek()? {
            None => return Err(syntax("EOF while parsing a value", self.pos())),
            Some(c) => c,
        };
        // Offsets are relative to `start`, which stays put while reading on.
        let mut rel = 1;
        match first {
            b'{' | b'[' => {
                let mut depth: u64 = 1;
                loop {
                    let data = &self.buf[self.start..self.end];
                    match scan_container(data, rel, &mut depth) {
                        Ok(n) => return Ok(self.take(n)),
                        // Resume at the returned offset once more is read.
                        Err(resume) => rel = resume,
                    }
                    if !self.fill()? {
                        return Err(syntax("EOF while parsing a value", self.pos() + rel as u64));
                    }
                }
            }
            b'"' => loop {
                if let Some(n) = skip_string(&self.buf[self.start + 1..self.end]) {
                    return Ok(self.take(n + 2));
                }
                if !self.fill()? {
                    return Err(syntax("EOF while parsing a string", self.pos()));
                }
            },
            b',' | b':' | b']' | b'}' => Err(syntax("expected a value", self.pos())),
            _ => loop {
                // A number or literal runs to the next delimiter.
                let data = &self.buf[self.start..self.end];
                while rel < data.len() {
                    if matches!(
                        data[rel],
                        b',' | b']'
                            | b'}'
                            | b':'
                            | b' '
                            | b'\n'
                            | b'\r'
                            | b'\t'
                            | b'"'
                            | b'{'
                            | b'['
                    ) {
                        return Ok(self.take(rel));
                    }
                    rel += 1;
                }
                if !self.fill()? {
                    return Ok(self.take(rel));
                }
            },
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let s = self.start;
        self.start += n;
        &self.buf[s..s + n]
    }
}

/// Bytes that matter outside strings: quotes and brackets.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'[' as usize] = true;
    t[b'}' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// Scans a container from offset `rel` of `data` (just past its opening
/// bracket, `depth` levels deep). `Ok(len)`: the container ends at `len`.
/// `Err(resume)`: `data` ends first; scan again from `resume` (the start of
/// an unfinished string, or the end) with more bytes.
#[inline]
fn scan_container(
    data: &[u8],
    mut rel: usize,
    depth: &mut u64,
) -> std::result::Result<usize, usize> {
    while rel < data.len() {
        let c = data[rel];
        if !STRUCTURAL[c as usize] {
            rel += 1;
            continue;
        }
        match c {
            b'"' => {
                // Strings are short in slurmrestd output: a plain loop beats memchr.
                let mut i = rel + 1;
                loop {
                    match data.get(i) {
                        None => return Err(rel),
                        Some(b'"') => break,
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                    }
                }
                rel = i;
            }
            b'{' | b'[' => *depth += 1,
            _ => {
                *depth -= 1;
                if *depth == 0 {
                    return Ok(rel + 1);
                }
            }
        }
        rel += 1;
    }
    Err(rel)
}

/// Length of a string's content up to (not including) its closing quote,
/// given the bytes after the opening quote; `None` when it does not end here.
fn skip_string(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        i += memchr::memchr2(b'"', b'\\', &s[i..])?;
        if s[i] == b'"' {
            return Some(i);
        }
        // A backslash escapes the next byte (a `\uXXXX` tail has no quote).
        i += 2;
        if i > s.len() {
            return None;
        }
    }
}

/// What a top-level read found: the element count of the streamed member
/// (`None` when absent) and the raw `errors[]` value.
pub(crate) struct TopLevel {
    pub count: Option<usize>,
    pub errors: Option<Vec<u8>>,
    /// Raw `warnings[]` and `last_update` values, when present (small).
    pub warnings: Option<Vec<u8>>,
    pub last_update: Option<Vec<u8>>,
}

/// Reads the top-level object of `body`, handing each element of array
/// member `field` to `each` as soon as it is read, keeping `errors` raw and
/// validating every other member. `"field": null` is an empty array.
pub(crate) fn read_array<T: DeserializeOwned>(
    body: &mut dyn Read,
    field: &str,
    each: impl FnMut(T),
) -> Result<TopLevel> {
    read_array_capped(body, field, each, MAX_VALUE)
}

fn read_array_capped<T: DeserializeOwned>(
    body: &mut dyn Read,
    field: &str,
    mut each: impl FnMut(T),
    max_value: usize,
) -> Result<TopLevel> {
    let mut sc = Scanner::new(body);
    sc.max_value = max_value;
    sc.expect(b'{', "a slurmrestd response object")?;
    let mut top = TopLevel {
        count: None,
        errors: None,
        warnings: None,
        last_update: None,
    };
    if sc.peek()? == Some(b'}') {
        sc.start += 1;
    } else {
        loop {
            let key_at = sc.pos();
            let raw_key = sc.value()?;
            if raw_key.first() != Some(&b'"') {
                return Err(syntax("expected a member name", key_at));
            }
            let key: Cow<str> = serde_json::from_slice(raw_key)?;
            let key = key.into_owned();
            sc.expect(b':', "':'")?;
            if key == field {
                if top.count.is_some() {
                    return Err(serde_json::Error::duplicate_field(
                        // `duplicate_field` wants a &'static str.
                        if field == "jobs" { "jobs" } else { "data" },
                    ));
                }
                top.count = Some(elements(&mut sc, &mut each)?);
            } else if key == "errors" {
                top.errors = Some(owned(sc.value()?));
            } else if key == "warnings" {
                top.warnings = Some(owned(sc.value()?));
            } else if key == "last_update" {
                top.last_update = Some(owned(sc.value()?));
            } else {
                let v = sc.value()?;
                if let Err(e) = serde_json::from_slice::<IgnoredAny>(v) {
                    // Maybe a bare literal: check a rewritten copy (rare).
                    let mut v = v.to_vec();
                    if !nonfinite::rewrite_in_place(&mut v).changed {
                        return Err(e);
                    }
                    serde_json::from_slice::<IgnoredAny>(&v)?;
                }
            }
            match sc.peek()? {
                Some(b',') => sc.start += 1,
                Some(b'}') => {
                    sc.start += 1;
                    break;
                }
                _ => return Err(syntax("expected ',' or '}'", sc.pos())),
            }
        }
    }
    if sc.peek()?.is_some() {
        return Err(syntax("trailing characters", sc.pos()));
    }
    Ok(top)
}

/// A small top-level value kept for later parsing, bare literals rewritten.
fn owned(v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    nonfinite::rewrite_in_place(&mut v);
    v
}

fn elements<T: DeserializeOwned>(sc: &mut Scanner<'_>, each: &mut impl FnMut(T)) -> Result<usize> {
    match sc.peek()? {
        Some(b'[') => sc.start += 1,
        Some(b'n') => {
            serde_json::from_slice::<()>(sc.value()?)?;
            return Ok(0);
        }
        _ => {
            let at = sc.pos();
            let v = sc.value()?;
            return Err(syntax(
                &format!(
                    "invalid type: {}, expected an array",
                    String::from_utf8_lossy(&v[..v.len().min(16)])
                ),
                at,
            ));
        }
    }
    let mut n = 0;
    if sc.peek()? == Some(b']') {
        sc.start += 1;
        return Ok(0);
    }
    loop {
        each(sc.element()?);
        n += 1;
        match sc.peek()? {
            Some(b',') => sc.start += 1,
            Some(b']') => {
                sc.start += 1;
                return Ok(n);
            }
            _ => return Err(syntax("expected ',' or ']'", sc.pos())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `step` bytes per read, to cross every buffer boundary.
    struct Steps<'a>(&'a [u8], usize);
    impl Read for Steps<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn elems(body: &str, step: usize) -> Result<(Vec<String>, Option<usize>)> {
        let mut out = Vec::new();
        let top = read_array(
            &mut Steps(body.as_bytes(), step),
            "jobs",
            |v: serde_json::Value| out.push(v.to_string()),
        )?;
        Ok((out, top.count))
    }

    #[test]
    fn finds_elements_across_reads() {
        let body = r#" {"meta":{"a":[1,{"b":"]}\"\\"}]},"jobs" : [ {"x":"a,b]}"} ,[1,2], "s\"]" ,-1.5e3,true,null ],"errors":[]} "#;
        for step in [1, 2, 3, 7, 1 << 20] {
            let (v, n) = elems(body, step).unwrap();
            assert_eq!(
                v,
                [
                    r#"{"x":"a,b]}"}"#,
                    "[1,2]",
                    r#""s\"]""#,
                    "-1500.0",
                    "true",
                    "null"
                ],
                "{step}"
            );
            assert_eq!(n, Some(6));
        }
        assert_eq!(elems(r#"{"jobs":null}"#, 1).unwrap(), (vec![], Some(0)));
        assert_eq!(elems(r#"{"jobs":[]}"#, 1).unwrap(), (vec![], Some(0)));
        assert_eq!(elems(r#"{"j\u006fbs":[1]}"#, 1).unwrap().1, Some(1));
        assert_eq!(elems(r#"{}"#, 1).unwrap().1, None);
    }

    #[test]
    fn bare_non_finite_literals_are_read_as_marker_strings() {
        // Slurm <= 24.11 prints non-finite doubles bare, anywhere.
        let body = r#"{"meta":{"x":-Infinity},"jobs":[{"a":Infinity,"s":"Infinity, NaN"},[NaN,-Infinity],1],"warnings":[{"n":NaN}],"last_update":5}"#;
        for step in [1, 2, 3, 5, 7, 1 << 20] {
            let mut out = Vec::new();
            let top = read_array(
                &mut Steps(body.as_bytes(), step),
                "jobs",
                |v: serde_json::Value| out.push(v.to_string()),
            )
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(
                out,
                [
                    r#"{"a":"+inf  ","s":"Infinity, NaN"}"#,
                    r#"["N","-inf   "]"#,
                    "1"
                ],
                "step {step}"
            );
            assert_eq!(top.warnings.as_deref(), Some(&br#"[{"n":"N"}]"#[..]));
        }
        // Other bare words stay errors.
        for bad in [
            r#"{"jobs":[Infinit]}"#,
            r#"{"jobs":[Infinityy]}"#,
            r#"{"jobs":[{"a":Inf}]}"#,
            r#"{"jobs":[-Inf]}"#,
            r#"{"meta":Nan,"jobs":[]}"#,
        ] {
            for step in [1, 3, 4096] {
                assert!(elems(bad, step).is_err(), "{bad:?} {step}");
            }
        }
    }

    #[test]
    fn malformed_structure_is_an_error() {
        for bad in [
            "",
            "[]",
            "null",
            "{",
            r#"{"jobs":[1,]}"#,
            r#"{"jobs":[1 2]}"#,
            r#"{"jobs":[1],}"#,
            r#"{"jobs":5}"#,
            r#"{"jobs":{}}"#,
            r#"{"jobs":[],"jobs":[]}"#,
            r#"{"meta":{tru}}"#,
            r#"{"meta":[1}}"#,
            r#"{"jobs":[]} x"#,
            r#"{"jobs":[],"errors":["unterminated]}"#,
            r#"{5:1}"#,
            r#"{"a" 1}"#,
            "\u{feff}{}",
        ] {
            assert!(elems(bad, 1).is_err(), "{bad:?}");
            assert!(elems(bad, 4096).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_value_over_the_cap_is_refused_without_holding_it() {
        // (With a 1 MiB cap here; the real one is MAX_VALUE.)
        struct Endless(bool);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if !self.0 {
                    self.0 = true;
                    buf[..9].copy_from_slice(b"{\"jobs\":[");
                    return Ok(9);
                }
                buf.fill(b'[');
                Ok(buf.len())
            }
        }
        let err = read_array_capped(&mut Endless(false), "jobs", |_: IgnoredAny| (), 1 << 20)
            .err()
            .unwrap();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
