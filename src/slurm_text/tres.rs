//! TRES strings: `cpu=8,mem=32G,node=1,billing=20,gres/gpu=2,gres/gpu:h100=2`.

use crate::model::Tres;

const MIB: f64 = 1024.0 * 1024.0;

/// Parses a TRES string. Keys the model does not track (`energy`,
/// `license/...`, `gres/gpumem`, `fs/disk`) are skipped; an entry without
/// `=` or with an unparsable value for a tracked key makes the whole string
/// invalid (`None`). An empty string is an empty allocation.
pub fn parse(s: &str) -> Option<Tres> {
    let mut tres = Tres::default();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry.split_once('=')?;
        let value = value.trim();
        match key.trim() {
            "cpu" => tres.cpus = count(value)?,
            "mem" => tres.memory_bytes = memory_bytes(value)?,
            "node" => tres.nodes = count(value)?,
            "billing" => {
                let b: f64 = value.parse().ok()?;
                tres.billing = if b.is_finite() && b >= 0.0 {
                    b
                } else {
                    return None;
                };
            }
            "gres/gpu" => tres.gpus = count(value)?,
            k => {
                if let Some(ty) = k.strip_prefix("gres/gpu:") {
                    if ty.is_empty() {
                        return None;
                    }
                    *tres.gpus_by_type.entry(ty.to_string()).or_default() += count(value)?;
                }
            }
        }
    }
    // Some Slurm versions only give typed counts; the untyped total is their sum.
    if tres.gpus == 0 {
        tres.gpus = tres
            .gpus_by_type
            .values()
            .try_fold(0u64, |a, v| a.checked_add(*v))?;
    }
    Some(tres)
}

fn count(v: &str) -> Option<u64> {
    v.parse().ok()
}

/// Memory with Slurm's binary unit suffix; a bare number is megabytes.
pub fn memory_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 1.0 / 1024.0),
        b'M' | b'm' => (&v[..v.len() - 1], 1.0),
        b'G' | b'g' => (&v[..v.len() - 1], 1024.0),
        b'T' | b't' => (&v[..v.len() - 1], 1024.0 * 1024.0),
        b'P' | b'p' => (&v[..v.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (v, 1.0),
    };
    // Integers stay exact; decimals (`1.5G`) go through f64.
    if let Ok(n) = num.parse::<u64>() {
        if mult >= 1.0 {
            return n.checked_mul(mult as u64)?.checked_mul(MIB as u64);
        }
        return n.checked_mul(1024);
    }
    let n: f64 = num.parse().ok()?;
    let bytes = n * mult * MIB;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn parses_full_alloc() {
        let t = parse("cpu=8,mem=32G,node=1,billing=20,gres/gpu=2,gres/gpu:h100=2").unwrap();
        assert_eq!(t.cpus, 8);
        assert_eq!(t.memory_bytes, 32 * GIB);
        assert_eq!(t.nodes, 1);
        assert_eq!(t.billing, 20.0);
        assert_eq!(t.gpus, 2);
        assert_eq!(t.gpus_by_type.get("h100"), Some(&2));
    }

    #[test]
    fn memory_units() {
        assert_eq!(memory_bytes("2000M"), Some(2000 << 20));
        assert_eq!(memory_bytes("2000"), Some(2000 << 20));
        assert_eq!(memory_bytes("512K"), Some(512 << 10));
        assert_eq!(memory_bytes("1T"), Some(1 << 40));
        assert_eq!(memory_bytes("2P"), Some(2 << 50));
        assert_eq!(memory_bytes("1.5G"), Some(3 * GIB / 2));
        assert_eq!(memory_bytes("G"), None);
        assert_eq!(memory_bytes(""), None);
        assert_eq!(memory_bytes("-1G"), None);
        assert_eq!(memory_bytes("99999999999999999P"), None);
        assert_eq!(memory_bytes("1e300G"), None);
    }

    #[test]
    fn skips_untracked_keys() {
        let t = parse("cpu=2,mem=4000M,node=1,billing=2,license/matlab=2,gres/gpumem=0,energy=0")
            .unwrap();
        assert_eq!(t.cpus, 2);
        assert_eq!(t.gpus, 0);
        assert!(t.gpus_by_type.is_empty());
        assert_eq!(parse(""), Some(Tres::default()));
        // Typed-only strings still give a total.
        let t = parse("gres/gpu:a100=1,gres/gpu:h100=2").unwrap();
        assert_eq!(t.gpus, 3);
        assert_eq!(parse("billing=1.48828125").unwrap().billing, 1.48828125);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "cpu",
            "cpu=x",
            "cpu=-1",
            "mem=lots",
            "gres/gpu=1.5",
            "gres/gpu:=1",
            "billing=NaN",
            "billing=-3",
            "cpu=99999999999999999999",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
