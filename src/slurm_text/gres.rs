//! GRES strings, in the shapes slurmrestd uses them:
//!
//! * node `gres`: `gpu:h100:8(S:0-1)`, `gpu:8`, `gpu:h100:2,gpu:a100:4`, `(null)`, `N/A`
//! * node `gres_used`: `gpu:h100:2(IDX:0-1),mps:0`
//! * job `gres_detail` (one entry per node): `gpu:h100:2(IDX:2-3)`, `gpu:h100:1(IDX:0,3)`
//! * job `tres_per_node`/`tres_per_job`: `gres:gpu:h100:2` (22.05), `gres/gpu:2` (23.02+)

use std::collections::BTreeMap;

use super::split_top_level;

/// Device indices beyond this are treated as garbage; no node has more GPUs.
const MAX_INDEX: u32 = 1 << 16;

/// One `name[:type][:count][(...)]` item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GresItem {
    /// GRES name (`gpu`, `mps`, `shard`).
    pub name: String,
    /// Type (`h100`); `None` when untyped or `(null)`.
    pub gres_type: Option<String>,
    pub count: u64,
    /// `IDX:` device indices, when present.
    pub indices: Vec<u32>,
}

/// GPU totals of a GRES list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuCount {
    pub total: u64,
    /// Count per type; untyped GPUs are not listed here.
    pub by_type: BTreeMap<String, u64>,
}

impl GpuCount {
    /// The GPU type as one label: the single type, or the sorted types
    /// comma-joined on a mixed node; empty when untyped.
    pub fn type_label(&self) -> String {
        self.by_type.keys().cloned().collect::<Vec<_>>().join(",")
    }
}

/// Parses a node or job GRES list. `(null)`, `N/A` and empty mean none.
pub fn parse_list(s: &str) -> Option<Vec<GresItem>> {
    let s = s.trim();
    if is_none(s) {
        return Some(Vec::new());
    }
    split_top_level(s)?
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_item)
        .collect()
}

/// Parses `tres_per_node`/`tres_per_job`/`tres_per_task`, keeping only GRES
/// entries (`gres:gpu:2`, `gres/gpu:h100:2`, `gres/gpu=2`); others (`cpu=2`) are skipped.
pub fn parse_tres_per(s: &str) -> Option<Vec<GresItem>> {
    let s = s.trim();
    if is_none(s) {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for part in split_top_level(s)?.into_iter().map(str::trim) {
        let Some(rest) = part
            .strip_prefix("gres:")
            .or_else(|| part.strip_prefix("gres/"))
        else {
            continue;
        };
        // `gres/gpu=2` puts the count after `=`.
        let rest = rest.replacen('=', ":", 1);
        out.push(parse_item(&rest)?);
    }
    Some(out)
}

/// Sums the `gpu` items of a list.
pub fn gpu_count(items: &[GresItem]) -> Option<GpuCount> {
    let mut c = GpuCount::default();
    for it in items.iter().filter(|i| i.name == "gpu") {
        c.total = c.total.checked_add(it.count)?;
        if let Some(t) = &it.gres_type {
            let e = c.by_type.entry(t.clone()).or_default();
            *e = e.checked_add(it.count)?;
        }
    }
    Some(c)
}

/// GPUs of a node `gres`/`gres_used` string; malformed input counts as none
/// rather than failing the node.
pub fn gpus(s: &str) -> Option<GpuCount> {
    gpu_count(&parse_list(s)?)
}

fn is_none(s: &str) -> bool {
    s.is_empty() || s == "(null)" || s.eq_ignore_ascii_case("N/A")
}

fn parse_item(item: &str) -> Option<GresItem> {
    // Split off the `(S:0-1)` / `(IDX:0-1)` annotations.
    // `(null)` is a type placeholder, not an annotation: `gpu:(null):0`.
    let open = item
        .match_indices('(')
        .map(|(i, _)| i)
        .find(|&i| !item[i..].starts_with("(null)"));
    let (head, annotations) = match open {
        Some(i) => (&item[..i], &item[i..]),
        None => (item, ""),
    };
    let mut fields = head.split(':');
    let name = fields.next()?.trim();
    if name.is_empty() || name.contains(['=', ' ', '[', ']', ')']) {
        return None;
    }
    let rest: Vec<&str> = fields.map(str::trim).collect();
    let (gres_type, count) = match rest.as_slice() {
        // A bare name is one unit.
        [] => (None, 1),
        // `gpu:8` is a count, `gpu:h100` a type; a count that does not fit is garbage.
        [one] if one.starts_with(|c: char| c.is_ascii_digit()) => (None, parse_count(one)?),
        [one] => (Some(*one), 1),
        [ty, n] => (Some(*ty), parse_count(n)?),
        _ => return None,
    };
    let gres_type = match gres_type {
        Some("") => return None,
        Some("(null)") | None => None,
        Some(t) => Some(t.to_string()),
    };
    Some(GresItem {
        name: name.to_string(),
        gres_type,
        count,
        indices: parse_annotations(annotations)?,
    })
}

/// GRES counts may carry a binary suffix (`mps:100K`).
fn parse_count(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        b'T' | b't' => (&s[..s.len() - 1], 1 << 40),
        b'P' | b'p' => (&s[..s.len() - 1], 1 << 50),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `(S:0-1)(IDX:0,3)` → indices of the `IDX` group; other groups are ignored.
fn parse_annotations(mut s: &str) -> Option<Vec<u32>> {
    let mut indices = Vec::new();
    while !s.is_empty() {
        let inner_end = s.find(')')?;
        let inner = s.strip_prefix('(')?.get(..inner_end.checked_sub(1)?)?;
        if let Some(idx) = inner.strip_prefix("IDX:") {
            indices = parse_indices(idx)?;
        }
        s = &s[inner_end + 1..];
    }
    Some(indices)
}

/// `0-1`, `0,3`, `N/A` (none known).
pub fn parse_indices(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    if is_none(s) {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: u32 = lo.trim().parse().ok()?;
        let hi: u32 = hi.trim().parse().ok()?;
        if hi < lo || hi >= MAX_INDEX || out.len() + (hi - lo) as usize >= MAX_INDEX as usize {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, ty: Option<&str>, count: u64, idx: &[u32]) -> GresItem {
        GresItem {
            name: name.into(),
            gres_type: ty.map(Into::into),
            count,
            indices: idx.to_vec(),
        }
    }

    #[test]
    fn node_gres() {
        assert_eq!(
            parse_list("gpu:h100:8(S:0-1)"),
            Some(vec![item("gpu", Some("h100"), 8, &[])])
        );
        assert_eq!(parse_list("gpu:8"), Some(vec![item("gpu", None, 8, &[])]));
        assert_eq!(parse_list("gpu"), Some(vec![item("gpu", None, 1, &[])]));
        assert_eq!(
            parse_list("gpu:h100"),
            Some(vec![item("gpu", Some("h100"), 1, &[])])
        );
        let mixed = gpus("gpu:h100:2,gpu:a100:4").unwrap();
        assert_eq!(mixed.total, 6);
        assert_eq!(mixed.type_label(), "a100,h100");
        assert_eq!(parse_list("(null)"), Some(vec![]));
        assert_eq!(parse_list("N/A"), Some(vec![]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(gpus("gpu:(null):0").unwrap().total, 0);
    }

    #[test]
    fn gres_used_and_detail() {
        assert_eq!(
            parse_list("gpu:h100:2(IDX:0-1),mps:0"),
            Some(vec![
                item("gpu", Some("h100"), 2, &[0, 1]),
                item("mps", None, 0, &[])
            ])
        );
        assert_eq!(
            parse_list("gpu:h100:2(IDX:2-3)"),
            Some(vec![item("gpu", Some("h100"), 2, &[2, 3])])
        );
        assert_eq!(
            parse_list("gpu:h100:1(IDX:0,3)"),
            Some(vec![item("gpu", Some("h100"), 1, &[0, 3])])
        );
        assert_eq!(
            parse_list("gpu:h100:2(S:0)(IDX:4-5)"),
            Some(vec![item("gpu", Some("h100"), 2, &[4, 5])])
        );
        assert_eq!(
            parse_list("gpu:1(IDX:N/A)"),
            Some(vec![item("gpu", None, 1, &[])])
        );
        assert_eq!(gpus("gpu:h100:7(IDX:0-6)").unwrap().total, 7);
        assert_eq!(parse_list("mps:100K").unwrap()[0].count, 100 << 10);
    }

    #[test]
    fn tres_per_forms() {
        assert_eq!(
            parse_tres_per("gres:gpu:h100:2"),
            Some(vec![item("gpu", Some("h100"), 2, &[])])
        );
        assert_eq!(
            parse_tres_per("gres/gpu:2"),
            Some(vec![item("gpu", None, 2, &[])])
        );
        assert_eq!(
            parse_tres_per("gres/gpu=2"),
            Some(vec![item("gpu", None, 2, &[])])
        );
        assert_eq!(
            parse_tres_per("cpu=2,gres/gpu:h100:1"),
            Some(vec![item("gpu", Some("h100"), 1, &[])])
        );
        assert_eq!(parse_tres_per(""), Some(vec![]));
        assert_eq!(parse_tres_per("N/A"), Some(vec![]));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "gpu:h100:x",
            "gpu:a:b:c",
            ":8",
            "gpu:h100:2(IDX:3-1)",
            "gpu:h100:2(IDX:0-99999999)",
            "gpu:h100:2(IDX:0-1",
            "gpu:h100:2)(",
            "gpu::2",
            "gpu:-2:2x",
            "gpu:99999999999999999999",
            "gpu:99999999999P",
        ] {
            assert_eq!(parse_list(bad), None, "{bad:?}");
        }
        assert_eq!(gpus("gpu:18446744073709551615,gpu:1"), None);
    }
}
