//! Reports against real query APIs: Prometheus (and VictoriaMetrics) fed with backfilled samples.
//! One test crate (one link of the library) for what were separate crates:
//! - `month`: the monthly `report`, on Prometheus and VictoriaMetrics;
//! - `job`: `job-report` / `report job`.

mod job;
mod month;
#[path = "../support/prometheus.rs"]
mod real_prometheus;
