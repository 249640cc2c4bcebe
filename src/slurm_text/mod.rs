//! Slurm's own string formats: TRES lists, GRES specs, host lists, array task ranges.
//!
//! Every parser here is total: hostile or garbled input gives `None`/`Err`,
//! never a panic, and expansion is capped so input size cannot explode memory.

pub mod array;
pub mod gres;
pub mod hostlist;
pub mod tres;

/// Splits `s` on commas that are not inside `(...)` or `[...]`, so
/// `gpu:h100:1(IDX:0,3),mps:0` and `n[1-3,7],x` split where Slurm means them to.
/// Returns `None` on unbalanced brackets.
pub(crate) fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut depth: u32 = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth = depth.checked_add(1)?,
            ')' | ']' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::split_top_level;

    #[test]
    fn splits_outside_brackets_only() {
        assert_eq!(
            split_top_level("gpu:h100:1(IDX:0,3),mps:0"),
            Some(vec!["gpu:h100:1(IDX:0,3)", "mps:0"])
        );
        assert_eq!(split_top_level("n[1-3,7],x"), Some(vec!["n[1-3,7]", "x"]));
        assert_eq!(split_top_level(""), Some(vec![""]));
        assert_eq!(split_top_level("a[1,2"), None);
        assert_eq!(split_top_level("a]1["), None);
    }
}
