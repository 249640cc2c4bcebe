//! The accountant's numbers against Slurm's own: sreport on recorded clusters, and the slurmdbd path, budgets and state file.
//! One test crate (one link of the library) for what were separate crates:
//! - `sreport`: the accountant against sreport;
//! - `slurmdb`: the slurmdbd path, budget accounts, the state file.

mod slurmdb;
mod sreport;
