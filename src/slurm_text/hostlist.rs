//! Slurm host list expressions: `vm,gpu-node[02-04]`, `n[1-3,7],x[01-02]-ib`,
//! `rack[1-2]-n[01-02]` (several bracket groups multiply out, as in Slurm).

use super::split_top_level;

/// Default cap on the number of names one expression may expand to, so a
/// hostile `n[0-99999999999]` cannot exhaust memory.
pub const MAX_HOSTS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostlistError {
    #[error("unbalanced or nested brackets in host list")]
    Brackets,
    #[error("invalid range `{0}` in host list")]
    Range(String),
    #[error("host list expands to more than {0} names")]
    TooLarge(usize),
}

/// Expands `s` into host names, in order, capped at [`MAX_HOSTS`].
/// An empty string or Slurm's `(null)` is an empty list.
pub fn expand(s: &str) -> Result<Vec<String>, HostlistError> {
    expand_with_limit(s, MAX_HOSTS)
}

pub fn expand_with_limit(s: &str, limit: usize) -> Result<Vec<String>, HostlistError> {
    let s = s.trim();
    if s.is_empty() || s == "(null)" {
        return Ok(Vec::new());
    }
    let exprs: Vec<Vec<Segment>> = split_top_level(s)
        .ok_or(HostlistError::Brackets)?
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_expr)
        .collect::<Result<_, _>>()?;

    // Count first so nothing is allocated for an oversized expression.
    let mut total: usize = 0;
    for expr in &exprs {
        let n = expr.iter().try_fold(1usize, |acc, seg| match seg {
            Segment::Text(_) => Some(acc),
            Segment::Ranges(r) => acc.checked_mul(r.iter().map(Range::len).sum::<usize>()),
        });
        total = n
            .and_then(|n| total.checked_add(n))
            .filter(|t| *t <= limit)
            .ok_or(HostlistError::TooLarge(limit))?;
    }

    let mut out = Vec::with_capacity(total);
    for expr in &exprs {
        let mut names = vec![String::new()];
        for seg in expr {
            names = match seg {
                Segment::Text(t) => names.into_iter().map(|n| n + t).collect(),
                Segment::Ranges(ranges) => names
                    .iter()
                    .flat_map(|prefix| {
                        ranges.iter().flat_map(move |r| {
                            (r.lo..=r.hi).map(move |i| format!("{prefix}{i:0w$}", w = r.width))
                        })
                    })
                    .collect(),
            };
        }
        out.extend(names);
    }
    Ok(out)
}

enum Segment<'a> {
    Text(&'a str),
    Ranges(Vec<Range>),
}

struct Range {
    lo: u64,
    hi: u64,
    /// Zero-padded width, taken from the lower bound as Slurm does (`[02-10]`).
    width: usize,
}

impl Range {
    fn len(&self) -> usize {
        usize::try_from(self.hi - self.lo)
            .ok()
            .and_then(|d| d.checked_add(1))
            .unwrap_or(usize::MAX)
    }
}

fn parse_expr(expr: &str) -> Result<Vec<Segment<'_>>, HostlistError> {
    let mut segs = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        if open > 0 {
            segs.push(Segment::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after.find(']').ok_or(HostlistError::Brackets)?;
        let inner = &after[..close];
        if inner.contains('[') {
            return Err(HostlistError::Brackets);
        }
        let ranges = inner
            .split(',')
            .map(parse_range)
            .collect::<Result<Vec<_>, _>>()?;
        segs.push(Segment::Ranges(ranges));
        rest = &after[close + 1..];
    }
    if rest.contains(']') {
        return Err(HostlistError::Brackets);
    }
    if !rest.is_empty() {
        segs.push(Segment::Text(rest));
    }
    Ok(segs)
}

fn parse_range(r: &str) -> Result<Range, HostlistError> {
    let bad = || HostlistError::Range(r.chars().take(64).collect());
    let r_trim = r.trim();
    let (lo_s, hi_s) = r_trim.split_once('-').unwrap_or((r_trim, r_trim));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(lo_s) || !digits(hi_s) {
        return Err(bad());
    }
    let lo: u64 = lo_s.parse().map_err(|_| bad())?;
    let hi: u64 = hi_s.parse().map_err(|_| bad())?;
    if hi < lo || lo_s.len() > 20 {
        return Err(bad());
    }
    Ok(Range {
        lo,
        hi,
        width: lo_s.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Vec<String> {
        expand(s).unwrap()
    }

    #[test]
    fn expands_common_forms() {
        assert_eq!(
            ex("vm,gpu-node[02-04]"),
            ["vm", "gpu-node02", "gpu-node03", "gpu-node04"]
        );
        assert_eq!(
            ex("gpu-node[02-04],vm"),
            ["gpu-node02", "gpu-node03", "gpu-node04", "vm"]
        );
        assert_eq!(
            ex("n[1-3,7],x[01-02]-ib"),
            ["n1", "n2", "n3", "n7", "x01-ib", "x02-ib"]
        );
        assert_eq!(ex("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(ex("n[098-101]"), ["n098", "n099", "n100", "n101"]);
        assert_eq!(ex("r[1-2]-n[1-2]"), ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]);
        assert_eq!(ex("vm"), ["vm"]);
        assert_eq!(ex(" a , b "), ["a", "b"]);
        assert!(ex("").is_empty());
        assert!(ex("(null)").is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(expand("n[1-3"), Err(HostlistError::Brackets));
        assert_eq!(expand("n1-3]"), Err(HostlistError::Brackets));
        assert_eq!(expand("n[[1-3]]"), Err(HostlistError::Brackets));
        assert!(matches!(expand("n[3-1]"), Err(HostlistError::Range(_))));
        assert!(matches!(expand("n[a-b]"), Err(HostlistError::Range(_))));
        assert!(matches!(expand("n[]"), Err(HostlistError::Range(_))));
        assert!(matches!(expand("n[-1]"), Err(HostlistError::Range(_))));
        assert!(matches!(
            expand("n[1-99999999999999999999999]"),
            Err(HostlistError::Range(_))
        ));
    }

    #[test]
    fn caps_expansion() {
        assert_eq!(
            expand("n[0-99999999999]"),
            Err(HostlistError::TooLarge(MAX_HOSTS))
        );
        assert_eq!(
            expand("a[0-18446744073709551615]"),
            Err(HostlistError::TooLarge(MAX_HOSTS))
        );
        // Products overflow before they are built.
        assert_eq!(
            expand("a[0-99999]b[0-99999]c[0-99999]d[0-99999]"),
            Err(HostlistError::TooLarge(MAX_HOSTS))
        );
        assert_eq!(
            expand_with_limit("n[1-3],m[1-2]", 4),
            Err(HostlistError::TooLarge(4))
        );
        assert_eq!(expand_with_limit("n[1-3],m[1]", 4).unwrap().len(), 4);
    }
}
