//! NVML call costs on a real GPU, beside the collector's cost and
//! `nvidia-smi`'s, measured in one run (a benchmark, not a test):
//!
//!     cargo build --release --example nvml_costs
//!     target/release/examples/nvml_costs [runs]
//!
//! For every backend call the GPU collector makes: the median of `runs`
//! calls on GPU 0. Then, side by side: the baseline (the sum of those
//! medians over every call one collection makes, for all GPUs), one whole
//! collection through `read_gpu` (the code the agent runs), and one
//! `nvidia-smi --query-gpu` run for the same fields. Output is Markdown,
//! for docs/node-agent.md.

use std::process::Command;
use std::time::{Duration, Instant};

use slurm_gpu_exporter::node::sources::gpu_sample::read_gpu;
use slurm_gpu_exporter::node::sources::nvml::{GpuBackend, NvmlBackend};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..3 {
        std::hint::black_box(f());
    }
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let loaded = NvmlBackend::load(None).and_then(|mut b| {
        let count = b.device_count()?;
        let id = b.identity(0)?;
        Ok((b, count, id))
    });
    let (mut b, count, id) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "{} GPU(s); GPU 0: {} ({}), driver {}; median of {runs} calls each\n",
        count,
        id.model,
        id.pci_bus_id,
        b.driver_version().unwrap_or_default()
    );

    // Calls in the order read_gpu makes them; `ok` shows whether the GPU supports it.
    type Call = (&'static str, fn(&mut NvmlBackend) -> bool);
    let calls: [Call; 19] = [
        ("utilization", |b| b.utilization(0).is_ok()),
        ("memory info", |b| b.memory(0).is_ok()),
        ("power", |b| b.power_mw(0).is_ok()),
        ("energy counter", |b| b.energy_mj(0).is_ok()),
        ("temperature", |b| b.temperature_c(0).is_ok()),
        ("memory temperature (field)", |b| {
            b.memory_temperature_c(0).is_ok()
        }),
        ("SM clock", |b| b.sm_clock_mhz(0).is_ok()),
        ("memory clock", |b| b.memory_clock_mhz(0).is_ok()),
        ("clock-event reasons", |b| b.clock_event_reasons(0).is_ok()),
        ("ECC corrected volatile", |b| {
            b.ecc_errors(0, true, false).is_ok()
        }),
        ("ECC corrected aggregate", |b| {
            b.ecc_errors(0, true, true).is_ok()
        }),
        ("ECC uncorrected volatile", |b| {
            b.ecc_errors(0, false, false).is_ok()
        }),
        ("ECC uncorrected aggregate", |b| {
            b.ecc_errors(0, false, true).is_ok()
        }),
        ("remapped rows (4 fields)", |b| b.remapped_rows(0).is_ok()),
        ("PCIe replay counter", |b| b.pcie_replays(0).is_ok()),
        ("NVLink errors (4 fields)", |b| b.nvlink_errors(0).is_ok()),
        ("running processes (compute + graphics)", |b| {
            b.processes(0).is_ok()
        }),
        ("MIG mode", |b| b.mig_enabled(0).is_ok()),
        // One GPM sample plus the metrics against the previous one: what
        // each collection pays for the profiling families.
        ("GPM profiling (sample + 15 metrics)", |b| {
            b.profiling(0).is_ok()
        }),
    ];
    println!("| NVML call (GPU 0) | median µs | supported |\n| --- | ---: | --- |");
    let mut per_gpu = Duration::ZERO;
    for (name, f) in calls {
        let supported = f(&mut b);
        let t = time(runs, || f(&mut b));
        per_gpu += t;
        println!(
            "| {name} | {} | {} |",
            us(t),
            if supported { "yes" } else { "no" }
        );
    }
    // What GPM reports over one second on GPU 0, for the record.
    let _ = b.profiling(0);
    std::thread::sleep(Duration::from_secs(1));
    println!("\nGPM over 1 s on GPU 0: {:?}\n", b.profiling(0));
    let t_count = time(runs, || b.device_count());
    println!("| device count | {} | yes |", us(t_count));

    let baseline = t_count + per_gpu * count;
    let mut ids = vec![None; count as usize];
    for (i, slot) in ids.iter_mut().enumerate() {
        read_gpu(&mut b, i as u32, slot);
    }
    let collection = time(runs.min(50), || {
        let _ = b.device_count();
        for (i, slot) in ids.iter_mut().enumerate() {
            std::hint::black_box(read_gpu(&mut b, i as u32, slot));
        }
    });
    let query = "index,uuid,pci.bus_id,utilization.gpu,utilization.memory,memory.used,memory.total,\
power.draw,total_energy_consumption,temperature.gpu,temperature.memory,clocks.sm,clocks.mem,\
clocks_event_reasons.active,ecc.errors.corrected.volatile.total,ecc.errors.corrected.aggregate.total,\
ecc.errors.uncorrected.volatile.total,ecc.errors.uncorrected.aggregate.total,\
remapped_rows.correctable,remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure,\
pcie.link.gen.current";
    let smi = time(10, || {
        Command::new("nvidia-smi")
            .args([&format!("--query-gpu={query}"), "--format=csv,noheader"])
            .output()
            .map(|o| o.status.success())
    });
    println!("\n| one collection of all {count} GPU(s) | median µs | ratio to baseline |");
    println!("| --- | ---: | ---: |");
    println!(
        "| baseline: sum of the call medians above × GPUs + device count | {} | 1.00 |",
        us(baseline)
    );
    let r = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64();
    println!(
        "| the collector (`read_gpu` per GPU) | {} | {:.2} |",
        us(collection),
        r(collection)
    );
    println!(
        "| `nvidia-smi --query-gpu` (same fields), one run | {} | {:.1} |",
        us(smi),
        r(smi)
    );
}
