//! Whole `/metrics` outputs against golden files (`tests/golden/`), byte for byte; `UPDATE_GOLDEN=1 cargo test --test golden_outputs` rewrites them.
//! One test crate (one link of the library) for what were separate crates:
//! - `cluster`: the cluster scraper;
//! - `node`: the node agent, one per fixture layout.

mod cluster;
#[path = "../common/mod.rs"]
mod common;
#[path = "../support/golden.rs"]
mod golden;
mod node;
