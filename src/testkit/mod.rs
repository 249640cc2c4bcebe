//! Test and demo helpers, kept out of the documented library API
//! (`#[doc(hidden)]` in `lib.rs`): the recorded-slurmrestd server
//! ([`replay`], the integration tests' mock and the demo's HTTP side) and the
//! node agent's fake sources ([`node`], re-exported from `crate::node::testkit`).

pub mod replay;

pub use crate::node::testkit as node;
