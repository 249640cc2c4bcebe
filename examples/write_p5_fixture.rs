//! Writes the p5-like node fixture (32 EFA devices, N processes) to a
//! directory, for running the agent binary against it:
//!
//! ```sh
//! cargo run --release --example write_p5_fixture -- /tmp/p5 2000
//! target/release/slurm-gpu-exporter node --gpu.backend=fake \
//!     --path.procfs /tmp/p5/proc --path.sysfs /tmp/p5/sys --slurm-node-name p5-st-7
//! ```
//!
//! (The binary's `fake` backend has no GPU processes; attribution against
//! this tree is exercised by the golden test and the benchmark.)

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: write_p5_fixture DIR [PROCESSES]"))?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let fx = slurm_gpu_exporter::node::testkit::write_p5(std::path::Path::new(&dir), n)?;
    println!(
        "{dir}: {} processes, {} EFA devices",
        fx.processes, fx.efa_devices
    );
    Ok(())
}
