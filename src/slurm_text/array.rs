//! Array task strings as `squeue` and slurmrestd print them for a pending
//! array meta record: `3-9%3`, `1,3,5-7`, `0-15:4`.

/// Number of tasks an array task string stands for, as `squeue -r` would
/// list them. The `%N` throttle limits concurrency, not the task count, so it
/// is ignored. Returns `None` for malformed input or a zero step.
pub fn count_tasks(s: &str) -> Option<u64> {
    // The throttle applies to the whole expression: `1,3,5-7%2`.
    let expr = match s.split_once('%') {
        Some((expr, throttle)) => {
            throttle.trim().parse::<u64>().ok()?;
            expr
        }
        None => s,
    };
    let expr = expr.trim();
    if expr.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    for part in expr.split(',') {
        total = total.checked_add(count_range(part.trim())?)?;
    }
    Some(total)
}

fn count_range(part: &str) -> Option<u64> {
    let (range, step) = match part.split_once(':') {
        Some((r, step)) => (r, step.parse::<u64>().ok()?),
        None => (part, 1),
    };
    if step == 0 {
        return None;
    }
    match range.split_once('-') {
        Some((lo, hi)) => {
            let lo: u64 = lo.parse().ok()?;
            let hi: u64 = hi.parse().ok()?;
            if hi < lo {
                return None;
            }
            Some((hi - lo) / step + 1)
        }
        None => {
            range.parse::<u64>().ok()?;
            Some(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count_tasks;

    #[test]
    fn counts_like_squeue_r() {
        assert_eq!(count_tasks("3-9%3"), Some(7));
        assert_eq!(count_tasks("4-11%4"), Some(8));
        assert_eq!(count_tasks("1,3,5-7"), Some(5));
        assert_eq!(count_tasks("0-15:4"), Some(4));
        assert_eq!(count_tasks("0-15:4%2"), Some(4));
        assert_eq!(count_tasks("7"), Some(1));
        assert_eq!(count_tasks("0-4294967295"), Some(4294967296));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "%3",
            "a-b",
            "9-3",
            "1-5:0",
            "1,,2",
            "1-",
            "-3",
            "1-5%x",
            "1-5:-1",
            "99999999999999999999",
        ] {
            assert_eq!(count_tasks(bad), None, "{bad:?}");
        }
    }
}
