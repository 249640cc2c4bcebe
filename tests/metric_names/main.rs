//! Our metric names against the reference (docs/metrics.md) and against Slurm's own names.
//! One test crate (one link of the library) for what were separate crates:
//! - `docs`: docs/metrics.md against the code and the outputs;
//! - `native`: none of our names is one of Slurm's own.

mod docs;
mod native;
