//! Cluster-scale benchmarks of the cluster scraper, on generated slurmrestd
//! responses shaped like the recorded fixtures (see `support/gen.rs`).
//!
//! ```text
//! cargo bench --bench cluster_scale -- ingest [--jobs N] [--reps N]
//! cargo bench --bench cluster_scale -- rss [--jobs N,N...]
//! cargo bench --bench cluster_scale -- scrape [--jobs N] [--scrapers N] [--secs N]
//! cargo bench --bench cluster_scale -- gen --out DIR [--version v0.0.44] [--jobs N]
//! cargo bench --bench cluster_scale -- incremental [--jobs N]
//! cargo bench --bench cluster_scale -- cardinality [--jobs N] [--nodes N] [--scrape-interval S]
//! ```
//!
//! This machine is shared and noisy: every figure is printed next to a
//! baseline measured in the same run, and the ratio is what to compare.

#[path = "support/gen.rs"]
mod gen;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gen::{JobsBody, Shape, Version};
use slurm_gpu_exporter::cluster::collectors::queue::JobAggregates;
use slurm_gpu_exporter::model::Job;
use slurm_gpu_exporter::server;
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion, JobSink};

fn api(v: Version) -> ApiVersion {
    match v {
        Version::V0038 => ApiVersion::V0038,
        Version::V0044 => ApiVersion::V0044,
    }
}

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn usize(&self, name: &str, default: usize) -> usize {
        self.value(name)
            .map(|v| v.replace('_', "").parse().expect(name))
            .unwrap_or(default)
    }
    fn list(&self, name: &str, default: &[usize]) -> Vec<usize> {
        self.value(name)
            .map(|v| {
                v.split(',')
                    .map(|x| x.replace('_', "").parse().expect(name))
                    .collect()
            })
            .unwrap_or_else(|| default.to_vec())
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us with no
    // command: do a tiny smoke run then, so the bench code stays exercised.
    let cmd = args
        .0
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err() && !a.contains(','))
        .cloned();
    match cmd.as_deref() {
        Some("ingest") => ingest(args.usize("--jobs", 10_000), args.usize("--reps", 3)),
        Some("gen") => generate(&args),
        Some("parse") => parse_only(&args),
        Some("rss") => rss(&args.list("--jobs", &[1_000, 10_000, 100_000])),
        Some("scrape") => scrape(&args),
        Some("mem") => mem(args.usize("--jobs", 100_000)),
        Some("incremental") => incremental(args.usize("--jobs", 100_000)),
        Some("families") => families(args.usize("--jobs", 100_000)),
        Some("cardinality") => cardinality(
            args.usize("--jobs", 10_000),
            args.usize("--nodes", 1_000),
            args.usize("--scrape-interval", 30),
        ),
        Some("nodes") => nodes_conditional(args.usize("--nodes", 10_000)),
        Some("serve") => serve(args.usize("--jobs", 100_000), args.usize("--secs", 3600)),
        Some("all") => {
            ingest(args.usize("--jobs", 10_000), args.usize("--reps", 3));
            rss(&[1_000, 10_000, 100_000]);
            scrape(&args);
        }
        _ if args.has("--bench") => ingest(10_000, 3),
        _ => {
            ingest(200, 1);
        }
    }
}

/// Counts jobs without aggregating: the parser alone.
#[derive(Default)]
struct CountSink(u64);

impl JobSink for CountSink {
    fn job(&mut self, job: Job) {
        self.0 += job.task_count;
    }
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Best of `reps` runs of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn ingest(jobs: usize, reps: usize) {
    println!("## ingest: {jobs} jobs, best of {reps}, one thread");
    println!();
    println!("| version | body MB | KB/job | what | MB/s | × baseline |");
    println!("|---|---:|---:|---|---:|---:|");
    for v in [Version::V0044, Version::V0038] {
        let shape = Shape::reference(jobs);
        let body = JobsBody::collect(v, shape);
        let mb = body.len() as f64 / 1e6;
        let kb_job = body.len() as f64 / 1e3 / jobs as f64;

        // Sanity: the parser sees every generated record.
        let mut agg = JobAggregates::new(false);
        slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).expect("generated body parses");
        assert_eq!(agg.records, jobs as u64, "{v:?}");

        let base = best(reps, || {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            std::hint::black_box(&value);
        });
        let parse_only = best(reps, || {
            let mut sink = CountSink::default();
            slurmrestd::parse_jobs(api(v), &mut &body[..], &mut sink).unwrap();
            std::hint::black_box(sink.0);
        });
        let aggregated = best(reps, || {
            let mut agg = JobAggregates::new(false);
            slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).unwrap();
            std::hint::black_box(&agg);
        });
        let skim = best(reps, || {
            let v: serde::de::IgnoredAny = serde_json::from_slice(&body).unwrap();
            std::hint::black_box(v);
        });
        let b = mbps(body.len(), base);
        for (what, d) in [
            ("baseline `serde_json::from_slice::<Value>`", base),
            ("reference `from_slice::<IgnoredAny>` (skim only)", skim),
            ("`parse_jobs` → counting sink (parser only)", parse_only),
            ("`parse_jobs` → `JobAggregates`", aggregated),
        ] {
            let r = mbps(body.len(), d);
            println!(
                "| {} | {mb:.1} | {kb_job:.1} | {what} | {r:.0} | {:.2} |",
                v.as_str(),
                r / b
            );
        }
        std::io::stdout().flush().ok();
    }
    println!();
}

/// `parse_jobs` → `JobAggregates` only, for profilers (`perf record`).
fn parse_only(args: &Args) {
    let v = version_arg(args);
    let body = JobsBody::collect(v, Shape::reference(args.usize("--jobs", 10_000)));
    let d = best(args.usize("--reps", 5), || {
        let mut agg = JobAggregates::new(false);
        slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).unwrap();
        std::hint::black_box(&agg);
    });
    println!("{} parse_jobs: {:.0} MB/s", v.as_str(), mbps(body.len(), d));
}

fn version_arg(args: &Args) -> Version {
    match args.value("--version").unwrap_or("v0.0.44") {
        "v0.0.38" => Version::V0038,
        "v0.0.44" => Version::V0044,
        other => panic!("unsupported version {other}"),
    }
}

/// Writes a generated cluster's responses to a directory, in the layout of
/// `tests/fixtures/slurmrestd/<version>/` (for `replay`, curl, wrk, ...).
fn generate(args: &Args) {
    let out = std::path::PathBuf::from(args.value("--out").expect("--out DIR"));
    let v = version_arg(args);
    let shape = Shape::reference(args.usize("--jobs", 100_000));
    std::fs::create_dir_all(&out).unwrap();
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(out.join("slurm_jobs.json")).unwrap());
    let mut n = 0;
    for chunk in JobsBody::new(v, shape, 1 << 20) {
        n += chunk.len();
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    std::fs::write(out.join("slurm_nodes.json"), gen::nodes_body(v, &shape)).unwrap();
    std::fs::write(
        out.join("slurm_partitions.json"),
        gen::partitions_body(v, &shape),
    )
    .unwrap();
    if let Some(s) = gen::shares_body(v, &shape) {
        std::fs::write(out.join("slurm_shares.json"), s).unwrap();
    }
    std::fs::write(out.join("slurm_diag.json"), gen::diag_body(v)).unwrap();
    std::fs::write(out.join("slurm_ping.json"), gen::ping_body(v)).unwrap();
    println!("wrote {} ({n} bytes of jobs)", out.display());
}

// ---------------------------------------------------------------------------
// A mock slurmrestd serving a generated cluster, and the release exporter
// (`slurm-gpu-exporter cluster`) as a child process polling it.

/// Requests the mock answered, by endpoint.
#[derive(Default)]
struct Counts {
    jobs: AtomicU64,
    other: AtomicU64,
}

struct ChunkStream(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Serves `handler` on a loopback port; returns its URL.
async fn serve_on_loopback(handler: slurm_gpu_exporter::testkit::replay::Handler) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(slurm_gpu_exporter::testkit::replay::serve_tcp(
        listener, handler,
    ));
    url
}

/// A 200 JSON response whose body is the chunks `rx` receives.
fn streamed_json(
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> http::Response<slurm_gpu_exporter::testkit::replay::Body> {
    use http_body_util::BodyExt as _;
    let mut r = http::Response::new(http_body_util::StreamBody::new(ChunkStream(rx)).boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves v0.0.44 `shape` on loopback: `/jobs` is rendered while it is sent
/// (never held whole), the small endpoints come from memory.
async fn start_mock(shape: Shape, counts: Arc<Counts>) -> String {
    use slurm_gpu_exporter::testkit::replay::{full, Handler};
    let v = Version::V0044;
    let small: Arc<Vec<(String, bytes::Bytes)>> = Arc::new(
        [
            ("nodes", gen::nodes_body(v, &shape)),
            ("partitions", gen::partitions_body(v, &shape)),
            ("shares", gen::shares_body(v, &shape).unwrap()),
            ("diag", gen::diag_body(v)),
            ("ping", gen::ping_body(v)),
        ]
        .into_iter()
        .map(|(ep, b)| (format!("/slurm/v0.0.44/{ep}"), bytes::Bytes::from(b)))
        .collect(),
    );
    let handler: Handler = Arc::new(move |req: http::Request<hyper::body::Incoming>| {
        let small = small.clone();
        let counts = counts.clone();
        Box::pin(async move {
            let path = req.uri().path().trim_end_matches('/').to_string();
            if path == "/slurm/v0.0.44/jobs" {
                counts.jobs.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                tokio::task::spawn_blocking(move || {
                    for chunk in JobsBody::new(Version::V0044, shape, 1 << 20) {
                        if tx.blocking_send(bytes::Bytes::from(chunk)).is_err() {
                            return;
                        }
                    }
                });
                return streamed_json(rx);
            }
            counts.other.fetch_add(1, Ordering::Relaxed);
            match small.iter().find(|(p, _)| *p == path) {
                Some((_, b)) => full(http::StatusCode::OK, "application/json", b.clone()),
                None => full(
                    http::StatusCode::NOT_FOUND,
                    "text/plain",
                    "Unable to find path",
                ),
            }
        })
    });
    serve_on_loopback(handler).await
}

struct Exporter {
    child: std::process::Child,
    addr: String,
}

impl Exporter {
    fn start(url: &str, poll_interval: &str) -> Exporter {
        Exporter::start_with(url, poll_interval, &[])
    }

    /// [`Exporter::start`] with extra `cluster` flags.
    fn start_with(url: &str, poll_interval: &str, extra: &[&str]) -> Exporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        // Another machine (the device host) runs a copied binary.
        let bin = std::env::var_os("SLURM_GPU_EXPORTER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_slurm-gpu-exporter").into());
        let child = std::process::Command::new(bin)
            .args([
                "--log.level",
                "warn",
                "cluster",
                "--slurmrestd-url",
                url,
                "--slurmrestd-api-version",
                "v0.0.44",
                "--slurmrestd-timeout",
                "300s",
                "--poll-interval",
                poll_interval,
                "--web.listen-address",
                &addr,
            ])
            .args(extra)
            .env("SLURM_JWT", "bench")
            .spawn()
            .expect("spawn the exporter (cargo bench builds it)");
        Exporter { child, addr }
    }

    fn status(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .map(|kb: u64| kb * 1024)
            .unwrap_or(0)
    }

    /// CPU seconds the exporter has used, user and system (`/proc/PID/stat`).
    fn cpu_seconds(&self) -> (f64, f64) {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let tick = 100.0; // USER_HZ on Linux
        let t = |i: usize| f[i - 3].parse::<f64>().unwrap() / tick;
        (t(14), t(15))
    }

    /// Waits for the first snapshot (`/readyz` 200).
    async fn ready(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        loop {
            if let Ok((200, _)) = get(&self.addr, "/readyz").await {
                return t.elapsed();
            }
            assert!(t.elapsed() < limit, "exporter not ready in {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET on a fresh connection: status and body.
async fn get(addr: &str, path: &str) -> Result<(u16, bytes::Bytes), String> {
    let mut c = Conn::open(addr).await?;
    c.get(path).await
}

struct Conn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    addr: String,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, String> {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            addr: addr.to_string(),
        })
    }

    async fn get(&mut self, path: &str) -> Result<(u16, bytes::Bytes), String> {
        self.get_with(path, false).await
    }

    /// Like [`Conn::get_with`] asking for gzip, but only counts the body's
    /// bytes as they arrive: the load generator shares the 2 cores with the
    /// exporter, and copying each body into one buffer would be its cost, not
    /// the server's.
    async fn get_discard(&mut self, path: &str) -> Result<(u16, usize), String> {
        use http_body_util::BodyExt as _;
        let req = http::Request::get(path)
            .header(http::header::HOST, &self.addr)
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut n = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                n += data.len();
            }
        }
        Ok((status, n))
    }

    /// `gzip`: ask for a compressed body, as Prometheus does.
    async fn get_with(&mut self, path: &str, gzip: bool) -> Result<(u16, bytes::Bytes), String> {
        use http_body_util::BodyExt as _;
        let mut req = http::Request::get(path).header(http::header::HOST, &self.addr);
        if gzip {
            req = req.header(http::header::ACCEPT_ENCODING, "gzip");
        }
        let req = req.body(http_body_util::Empty::new()).unwrap();
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        // The load generator's threads; 2 here (the exporter gets the same 2
        // cores), more on a bigger host.
        .worker_threads(
            std::env::var("BENCH_CLIENT_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .unwrap()
}

/// `slurm_exporter_polls_total` of the exporter, 0 before the first snapshot.
async fn polls(addr: &str) -> u64 {
    match get(addr, "/metrics").await {
        Ok((200, b)) => String::from_utf8_lossy(&b)
            .lines()
            .find_map(|l| l.strip_prefix("slurm_exporter_polls_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64,
        _ => 0,
    }
}

/// Peak RSS (VmHWM) of the exporter after its first poll of clusters with
/// more and more jobs (10k nodes, 2,000 accounts × 5 users throughout), and
/// after four polls (the old snapshot is served while the next is built).
fn rss(sizes: &[usize]) {
    println!("## peak RSS of `slurm-gpu-exporter cluster` (v0.0.44, 10k nodes, 2,000 accounts × 5 users)");
    println!();
    println!("| jobs | /jobs body MB | first poll s | VmHWM after 1 poll, MiB | VmHWM after 4 polls, MiB | VmRSS then, MiB | /metrics text MiB | slurm_cluster_jobs series |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rt = runtime();
    for &jobs in sizes {
        rt.block_on(async {
            let shape = Shape::reference(jobs);
            let body_bytes: usize = JobsBody::new(Version::V0044, shape, 1 << 20)
                .map(|c| c.len())
                .sum();
            let counts = Arc::new(Counts::default());
            let url = start_mock(shape, counts.clone()).await;
            // Back-to-back polls: missed ticks are skipped, never bunched.
            let exp = Exporter::start(&url, "1s");
            let took = exp.ready(Duration::from_secs(900)).await;
            let first = exp.status("VmHWM:");
            let (status, metrics) = get(&exp.addr, "/metrics").await.unwrap();
            assert_eq!(status, 200);
            let text = String::from_utf8_lossy(&metrics);
            assert!(
                text.contains("slurm_exporter_endpoint_up{endpoint=\"jobs\"} 1"),
                "jobs endpoint down"
            );
            let series = text
                .lines()
                .filter(|l| l.starts_with("slurm_cluster_jobs{"))
                .count();
            let t = Instant::now();
            while polls(&exp.addr).await < 4 {
                assert!(t.elapsed() < Duration::from_secs(900), "polls stalled");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            println!(
                "| {jobs} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {series} |",
                body_bytes as f64 / 1e6,
                took.as_secs_f64(),
                mb(first),
                mb(exp.status("VmHWM:")),
                mb(exp.status("VmRSS:")),
                mb(metrics.len() as u64),
            );
            std::io::stdout().flush().ok();
        });
    }
    println!();
}

struct LoadResult {
    requests: usize,
    errors: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    bytes: usize,
}

/// The same closed loop driven by wrk (a second, independent load generator
/// in C), when it is installed: `None` otherwise.
fn load_wrk(addr: &str, scrapers: usize, secs: u64) -> Option<LoadResult> {
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{scrapers}"),
            &format!("-d{secs}s"),
            "--latency",
            "-H",
            "Accept-Encoding: gzip",
            &format!("http://{addr}/metrics"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dur = |v: &str| -> Option<Duration> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        let secs = match unit {
            "us" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            _ => return None,
        };
        Some(Duration::from_secs_f64(secs))
    };
    let pct = |p: &str| {
        text.lines().map(str::split_whitespace).find_map(|mut w| {
            (w.next() == Some(p))
                .then(|| w.next().and_then(dur))
                .flatten()
        })
    };
    let max = text
        .lines()
        .find(|l| l.trim_start().starts_with("Latency"))
        .and_then(|l| l.split_whitespace().nth(3).and_then(dur))?;
    // "38675 requests in 10.07s, 43.96GB read"
    let summary = text.lines().find(|l| l.contains("requests in"))?;
    let requests: usize = summary.split_whitespace().next()?.parse().ok()?;
    let read = summary.rsplit(", ").next()?.trim_end_matches(" read");
    let (num, unit) = read.split_at(read.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => 0.0,
    };
    let bytes = (num.parse::<f64>().ok()? * scale / requests.max(1) as f64) as usize;
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    Some(LoadResult {
        requests,
        errors,
        p50: pct("50%")?,
        p90: pct("90%")?,
        p99: pct("99%")?,
        max,
        bytes,
    })
}

/// Latencies, errors and body size of each scraper task, merged.
async fn summarize(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize, usize)>>,
) -> LoadResult {
    let mut all = Vec::new();
    let mut errors = 0;
    let mut bytes = 0;
    for t in tasks {
        let (l, e, b) = t.await.unwrap();
        all.extend(l);
        errors += e;
        bytes = bytes.max(b);
    }
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    LoadResult {
        requests: all.len(),
        errors,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: *all.last().unwrap(),
        bytes,
    }
}

/// `scrapers` connections each GETting `/metrics` back to back for `secs`.
async fn load(addr: &str, scrapers: usize, secs: u64) -> LoadResult {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..scrapers {
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut bytes = 0;
            let mut conn = Conn::open(&addr).await.expect("connect");
            while Instant::now() < until {
                scrape_once(&mut conn, &addr, &mut lat, &mut errors, &mut bytes).await;
            }
            (lat, errors, bytes)
        }));
    }
    summarize(tasks).await
}

/// One GET of `/metrics`: its latency, or an error and a new connection.
async fn scrape_once(
    conn: &mut Conn,
    addr: &str,
    lat: &mut Vec<Duration>,
    errors: &mut usize,
    bytes: &mut usize,
) {
    let t = Instant::now();
    match conn.get_discard("/metrics").await {
        Ok((200, n)) => {
            lat.push(t.elapsed());
            *bytes = n;
        }
        _ => {
            *errors += 1;
            *conn = Conn::open(addr).await.expect("reconnect");
        }
    }
}

/// `scrapers` connections each GETting `/metrics` once per `period`, as
/// Prometheus servers do: with `aligned`, all at the same instant (the worst
/// case); otherwise spread evenly over the period (Prometheus offsets each
/// server's scrapes of a target by a hash of the target and its own labels).
async fn load_paced(
    addr: &str,
    scrapers: usize,
    secs: u64,
    period: Duration,
    aligned: bool,
) -> LoadResult {
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..scrapers {
        let addr = addr.to_string();
        let offset = if aligned {
            Duration::ZERO
        } else {
            period * i as u32 / scrapers as u32
        };
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut bytes = 0;
            let mut conn = Conn::open(&addr).await.expect("connect");
            let mut next = start + offset;
            while next < until {
                tokio::time::sleep_until(next.into()).await;
                scrape_once(&mut conn, &addr, &mut lat, &mut errors, &mut bytes).await;
                next += period;
            }
            (lat, errors, bytes)
        }));
    }
    summarize(tasks).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `/metrics` latency with 50 concurrent scrapers against the snapshot of a
/// 10k-node / 100k-job cluster, first with no poll running (interval 1h),
/// then while the exporter re-polls every `--interval` seconds; and the
/// number of `/jobs` requests slurmrestd sees with and without scrapers.
/// What the conditional-nodes mock answers `?update_time=` with.
#[derive(Clone, Copy, PartialEq)]
enum NodesAnswer {
    /// No node changed: 304 (v0.0.38) / error 1900 (v0.0.40+).
    Unchanged,
    /// Nodes changed, partitions not: HTTP 500 `errno -1` (22.05, live).
    PartitionsUnchanged,
    /// Both changed: the whole list.
    Changed,
}

/// `/nodes` polls of a generated cluster with and without `?update_time=`:
/// time and bytes of an unconditional poll (the baseline), an unchanged one,
/// and the two "changed" answers slurmrestd gives.
fn nodes_conditional(n_nodes: usize) {
    use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
    use slurm_gpu_exporter::slurmrestd::client::{Client, ClientOptions, TokenSource};
    use slurm_gpu_exporter::testkit::replay::{full, Handler};
    let shape = Shape {
        nodes: n_nodes,
        ..Shape::reference(1_000)
    };
    let rt = runtime();
    rt.block_on(async {
        for version in [Version::V0038, Version::V0044] {
            let v = api(version);
            let body = bytes::Bytes::from(gen::nodes_body(version, &shape));
            let ping = bytes::Bytes::from(gen::ping_body(version));
            let answer = Arc::new(std::sync::Mutex::new(NodesAnswer::Changed));
            let bytes_served = Arc::new(AtomicU64::new(0));
            let handler: Handler = {
                let (answer, served) = (answer.clone(), bytes_served.clone());
                Arc::new(move |req: http::Request<hyper::body::Incoming>| {
                    let (body, ping) = (body.clone(), ping.clone());
                    let conditional = req.uri().query().unwrap_or("").contains("update_time=");
                    let a = *answer.lock().unwrap();
                    let served = served.clone();
                    let is_ping = req.uri().path().contains("/ping");
                    Box::pin(async move {
                        let (status, b) = match (is_ping, conditional, a) {
                            (true, _, _) => (200, ping),
                            (_, false, _) | (_, true, NodesAnswer::Changed) => (200, body),
                            (_, true, NodesAnswer::Unchanged) if v == ApiVersion::V0038 => {
                                (304, bytes::Bytes::new())
                            }
                            (_, true, NodesAnswer::Unchanged) => (500, bytes::Bytes::from_static(
                                br#"{"nodes":[],"errors":[{"description":"Failure to query nodes","error_number":1900,"error":"Data has not changed since time specified","source":"_dump_nodes"}],"warnings":[],"meta":{}}"#)),
                            (_, true, NodesAnswer::PartitionsUnchanged) => (500, bytes::Bytes::from_static(
                                br#"{"meta":{},"errors":[{"error":"Unspecified error","errno":-1}],"nodes":[]}"#)),
                        };
                        served.fetch_add(b.len() as u64, Ordering::Relaxed);
                        full(http::StatusCode::from_u16(status).unwrap(), "application/json", b)
                    })
                })
            };
            let url = serve_on_loopback(handler).await;
            let client = Arc::new(
                Client::new(ClientOptions {
                    url,
                    token: TokenSource::None,
                    user_name: None,
                    timeout: Duration::from_secs(60),
                    max_body_bytes: 1 << 30,
                    ca_file: None,
                })
                .unwrap(),
            );
            let opts = |update_time: bool| PollOptions {
                pinned_version: Some(v),
                jobs: false,
                partitions: false,
                fairshare: false,
                scheduler: false,
                nodes_update_time: update_time,
                nodes_full_poll_every: 1_000,
                ..PollOptions::default()
            };
            // Best of 5 polls, each by a poller primed with one full poll.
            let measure = |update_time: bool, a: NodesAnswer| {
                let (client, answer, served) = (client.clone(), answer.clone(), bytes_served.clone());
                async move {
                    let mut best = (Duration::MAX, 0);
                    for _ in 0..5 {
                        let mut p = Poller::new(client.clone(), opts(update_time));
                        *answer.lock().unwrap() = NodesAnswer::Changed;
                        p.poll().await;
                        *answer.lock().unwrap() = a;
                        let b0 = served.load(Ordering::Relaxed);
                        let t = Instant::now();
                        let set = p.poll().await;
                        let d = t.elapsed();
                        assert_eq!(
                            set.value("slurm_exporter_endpoint_up", &[("endpoint", "nodes")]),
                            Some(1.0)
                        );
                        best = best.min((d, served.load(Ordering::Relaxed) - b0));
                    }
                    best
                }
            };
            let (t_base, b_base) = measure(false, NodesAnswer::Changed).await;
            println!(
                "## /nodes polls, {} generated nodes, {} ({:.1} MB per list), best of 5",
                shape.nodes,
                version.as_str(),
                b_base as f64 / 1e6
            );
            println!();
            println!("| poll | bytes | × baseline bytes | ms | × baseline time |");
            println!("|---|---:|---:|---:|---:|");
            let row = |what: &str, (d, b): (Duration, u64)| {
                println!(
                    "| {what} | {b} | {:.5} | {:.2} | {:.3} |",
                    b as f64 / b_base as f64,
                    d.as_secs_f64() * 1e3,
                    d.as_secs_f64() / t_base.as_secs_f64()
                )
            };
            row("unconditional `/nodes` (baseline)", (t_base, b_base));
            row(
                "`?update_time=`, no node changed",
                measure(true, NodesAnswer::Unchanged).await,
            );
            row(
                "`?update_time=`, nodes and partitions changed",
                measure(true, NodesAnswer::Changed).await,
            );
            row(
                "`?update_time=`, nodes changed, partitions not (500, then unconditional)",
                measure(true, NodesAnswer::PartitionsUnchanged).await,
            );
            println!();
        }
    });
}

/// The mock serving the reference cluster of `jobs` jobs, and an exporter
/// that has polled it once (and polls again only after an hour).
async fn reference_exporter(jobs: usize) -> (Exporter, Shape) {
    let shape = Shape::reference(jobs);
    let url = start_mock(shape, Arc::new(Counts::default())).await;
    let exp = Exporter::start(&url, "1h");
    exp.ready(Duration::from_secs(900)).await;
    (exp, shape)
}

/// Runs the mock and an exporter polling it (once) for `secs`, printing
/// the exporter's address: for external load generators (wrk, hey).
fn serve(jobs: usize, secs: usize) {
    let rt = runtime();
    rt.block_on(async {
        let (exp, _) = reference_exporter(jobs).await;
        println!(
            "exporter: http://{}/metrics (pid {})",
            exp.addr,
            exp.child.id()
        );
        std::io::stdout().flush().ok();
        tokio::time::sleep(Duration::from_secs(secs as u64)).await;
    });
}

/// Where the bytes of a scrape go: samples, plain and gzip bytes per metric
/// family of the reference cluster's `/metrics` (each family compressed on
/// its own, so the shares are estimates of the whole body's).
fn families(jobs: usize) {
    use std::io::Write as _;
    let rt = runtime();
    rt.block_on(async {
        let (exp, shape) = reference_exporter(jobs).await;
        let (status, body) = get(&exp.addr, "/metrics").await.unwrap();
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        let mut fams: Vec<(String, usize, String)> = Vec::new();
        for line in text.lines() {
            let name = match line.strip_prefix("# HELP ").or(line.strip_prefix("# TYPE ")) {
                Some(rest) => rest.split(' ').next().unwrap_or(""),
                None => line.split(['{', ' ']).next().unwrap_or(""),
            };
            if fams.last().map(|f| f.0.as_str()) != Some(name) {
                fams.push((name.to_string(), 0, String::new()));
            }
            let f = fams.last_mut().unwrap();
            if !line.starts_with('#') {
                f.1 += 1;
            }
            f.2.push_str(line);
            f.2.push('\n');
        }
        let gz = |s: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(s.as_bytes()).unwrap();
            e.finish().unwrap().len()
        };
        let total_gz = gz(&text);
        let mut rows: Vec<(String, usize, usize, usize)> = fams
            .into_iter()
            .map(|(n, s, t)| {
                let g = gz(&t);
                (n, s, t.len(), g)
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.3));
        let samples: usize = rows.iter().map(|r| r.1).sum();
        println!(
            "## /metrics of {jobs} jobs / {} nodes: {samples} samples, {:.2} MiB plain, {:.2} MiB gzip",
            shape.nodes,
            mb(text.len() as u64),
            mb(total_gz as u64)
        );
        println!();
        println!("| family | samples | plain KiB | gzip KiB (alone) |");
        println!("|---|---:|---:|---:|");
        for (n, s, t, g) in rows.iter().filter(|r| r.3 > 2048) {
            println!("| {n} | {s} | {:.0} | {:.0} |", *t as f64 / 1024.0, *g as f64 / 1024.0);
        }
    });
}

/// Series per scrape (= samples per scrape interval a Prometheus ingests and
/// remote_writes) of a generated cluster, by family group, with the default
/// flags (the baseline) and with each flag that drops a class of series.
fn cardinality(jobs: usize, nodes: usize, scrape_interval: usize) {
    let shape = Shape {
        jobs,
        nodes,
        accounts: (nodes / 5).max(1),
        users_per_account: 5,
        seed: 0x5eed,
    };
    // Family name -> its group: the first two words (slurm_job, slurm_node, ...).
    let group = |name: &str| name.splitn(3, '_').take(2).collect::<Vec<_>>().join("_");
    let configs: &[(&str, &[&str])] = &[
        ("defaults (baseline)", &[]),
        (
            "`--collector.jobs.per-user=true` (adds per-user job counts)",
            &["--collector.jobs.per-user=true"],
        ),
        (
            "`--collector.jobs=false` (no per-job / per-GPU join, no job aggregates)",
            &["--collector.jobs=false"],
        ),
        (
            "`--collector.fairshare=false` (no per-user fairshare)",
            &["--collector.fairshare=false"],
        ),
        ("`--collector.nodes=false`", &["--collector.nodes=false"]),
        (
            "`--collector.usage=false` (no usage/cost counters: no `report`)",
            &["--collector.usage=false"],
        ),
        ("`--collector.limits=false`", &["--collector.limits=false"]),
    ];
    let rt = runtime();
    rt.block_on(async {
        let url = start_mock(shape, Arc::new(Counts::default())).await;
        let mut base: Option<(usize, std::collections::BTreeMap<String, usize>)> = None;
        println!(
            "## Series per scrape: {jobs} jobs, {nodes} nodes ({} GPU nodes x {} GPUs), {} accounts x 5 users; samples/s at a {scrape_interval} s scrape interval",
            shape.gpu_nodes(),
            gen::GPUS_PER_NODE,
            shape.accounts
        );
        println!();
        println!("| flags | series | x baseline | samples/s | changed groups (series) |");
        println!("|---|---:|---:|---:|---|");
        for (what, extra) in configs {
            // Usage counters are credited from the second poll on: wait for
            // the third, so every series a steady-state scrape has is there.
            let exp = Exporter::start_with(&url, "1s", extra);
            exp.ready(Duration::from_secs(900)).await;
            let t = Instant::now();
            while polls(&exp.addr).await < 3 {
                assert!(t.elapsed() < Duration::from_secs(900), "no third poll");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (status, body) = get(&exp.addr, "/metrics").await.unwrap();
            assert_eq!(status, 200);
            let mut groups: std::collections::BTreeMap<String, usize> = Default::default();
            for line in String::from_utf8_lossy(&body).lines() {
                if line.starts_with('#') || line.is_empty() {
                    continue;
                }
                *groups
                    .entry(group(line.split(['{', ' ']).next().unwrap_or("")))
                    .or_default() += 1;
            }
            let total: usize = groups.values().sum();
            let is_base = base.is_none();
            let (b_total, b_groups) = base.get_or_insert_with(|| (total, groups.clone()));
            let all: std::collections::BTreeSet<&String> =
                b_groups.keys().chain(groups.keys()).collect();
            let changed = all
                .into_iter()
                .filter_map(|g| {
                    let a = b_groups.get(g).copied().unwrap_or(0);
                    let b = groups.get(g).copied().unwrap_or(0);
                    if is_base {
                        Some(format!("{g} {b}"))
                    } else {
                        (a != b).then(|| format!("{g}: {a} -> {b}"))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {what} | {total} | {:.3} | {:.0} | {changed} |",
                total as f64 / *b_total as f64,
                total as f64 / scrape_interval as f64
            );
            drop(exp);
        }
        println!();
    });
}

fn scrape(args: &Args) {
    let jobs = args.usize("--jobs", 100_000);
    let scrapers = args.usize("--scrapers", 50);
    let secs = args.usize("--secs", 30) as u64;
    let interval = args.usize("--interval", 10) as u64;
    let rt = runtime();
    rt.block_on(async {
        let shape = Shape::reference(jobs);
        println!(
            "## /metrics under {scrapers} concurrent scrapers, {jobs} jobs / {} nodes, {secs} s per row",
            shape.nodes
        );
        println!();
        println!("| polling | scrapers | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | body MiB | exporter CPU µs/request (user + system) | /jobs requests to slurmrestd |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        // `cpu`: the exporter's (user, system) CPU seconds over the row.
        let row = |what: &str, n: usize, r: Option<&LoadResult>, cpu: (f64, f64), jobs_reqs: u64| match r {
            Some(r) => println!(
                "| {what} | {n} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} + {:.0} | {jobs_reqs} |",
                r.requests,
                r.errors,
                r.requests as f64 / secs as f64,
                ms(r.p50),
                ms(r.p90),
                ms(r.p99),
                ms(r.max),
                mb(r.bytes as u64),
                cpu.0 * 1e6 / r.requests.max(1) as f64,
                cpu.1 * 1e6 / r.requests.max(1) as f64,
            ),
            None => println!("| {what} | 0 | – | – | – | – | – | – | – | – | – | {jobs_reqs} |"),
        };
        // Runs `f` and returns its result with the exporter's CPU use meanwhile.
        async fn with_cpu<T>(exp: &Exporter, f: impl std::future::Future<Output = T>) -> (T, (f64, f64)) {
            let (u0, s0) = exp.cpu_seconds();
            let out = f.await;
            let (u1, s1) = exp.cpu_seconds();
            (out, (u1 - u0, s1 - s0))
        }

        // Baseline in the same run: the same load against a small cluster's
        // snapshot, where the payload is not what limits latency.
        {
            let small = Shape {
                jobs: 1_000,
                nodes: 100,
                accounts: 20,
                users_per_account: 5,
                seed: shape.seed,
            };
            let counts = Arc::new(Counts::default());
            let url = start_mock(small, counts.clone()).await;
            let exp = Exporter::start(&url, "1h");
            exp.ready(Duration::from_secs(900)).await;
            let (r, cpu) = with_cpu(&exp, load(&exp.addr, scrapers, secs)).await;
            row(
                "baseline: 100 nodes / 1k jobs, none (1h)",
                scrapers,
                Some(&r),
                cpu,
                counts.jobs.load(Ordering::Relaxed) - 1,
            );
        }
        // The brief's reference size: 1,000 nodes.
        {
            let mid = Shape {
                jobs: jobs / 10,
                nodes: shape.nodes / 10,
                accounts: shape.accounts / 10,
                users_per_account: shape.users_per_account,
                seed: shape.seed,
            };
            let counts = Arc::new(Counts::default());
            let url = start_mock(mid, counts.clone()).await;
            let exp = Exporter::start(&url, "1h");
            exp.ready(Duration::from_secs(900)).await;
            let (r, cpu) = with_cpu(&exp, load(&exp.addr, scrapers, secs)).await;
            row(
                &format!("{} nodes / {} jobs, none (1h)", mid.nodes, mid.jobs),
                scrapers,
                Some(&r),
                cpu,
                counts.jobs.load(Ordering::Relaxed) - 1,
            );
        }
        // Snapshot loaded, no poll in progress.
        let counts = Arc::new(Counts::default());
        let url = start_mock(shape, counts.clone()).await;
        {
            let exp = Exporter::start(&url, "1h");
            exp.ready(Duration::from_secs(900)).await;
            let before = counts.jobs.load(Ordering::Relaxed);
            let (r, cpu) = with_cpu(&exp, load(&exp.addr, scrapers, secs)).await;
            row(
                "none (interval 1h)",
                scrapers,
                Some(&r),
                cpu,
                counts.jobs.load(Ordering::Relaxed) - before,
            );
            let addr = exp.addr.clone();
            let (r, cpu) = with_cpu(
                &exp,
                tokio::task::spawn_blocking(move || load_wrk(&addr, scrapers, secs)),
            )
            .await;
            if let Ok(Some(r)) = r {
                row(
                    "none (1h); wrk -t2 instead of the Rust load generator",
                    scrapers,
                    Some(&r),
                    cpu,
                    0,
                );
            }
            std::io::stdout().flush().ok();
            for aligned in [false, true] {
                let (r, cpu) = with_cpu(
                    &exp,
                    load_paced(&exp.addr, scrapers, secs, Duration::from_secs(1), aligned),
                )
                .await;
                row(
                    if aligned {
                        "none (1h); each scraper once a second, all in the same instant"
                    } else {
                        "none (1h); each scraper once a second, spread over the second"
                    },
                    scrapers,
                    Some(&r),
                    cpu,
                    0,
                );
            }
            std::io::stdout().flush().ok();
        }
        // Re-polling every `interval`: scrapers against an idle window of the same length.
        let counts = Arc::new(Counts::default());
        let url = start_mock(shape, counts.clone()).await;
        let exp = Exporter::start(&url, &format!("{interval}s"));
        exp.ready(Duration::from_secs(900)).await;
        let before = counts.jobs.load(Ordering::Relaxed);
        let (r, cpu) = with_cpu(&exp, load(&exp.addr, scrapers, secs)).await;
        let during = counts.jobs.load(Ordering::Relaxed) - before;
        row(&format!("every {interval}s"), scrapers, Some(&r), cpu, during);
        let before = counts.jobs.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        row(
            &format!("every {interval}s"),
            0,
            None,
            (0.0, 0.0),
            counts.jobs.load(Ordering::Relaxed) - before,
        );
    });
}

/// Counts live heap bytes and their peak, for `mem` (RSS would also count
/// what the allocator keeps after frees).
struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = std::alloc::System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size() as u64, Ordering::Relaxed) + l.size() as u64;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size() as u64, Ordering::Relaxed);
        std::alloc::System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let q = std::alloc::System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add((new - l.size()) as u64, Ordering::Relaxed)
                    + (new - l.size()) as u64;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub((l.size() - new) as u64, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Where the exporter's memory goes, stage by stage, in this process (no
/// HTTP): VmRSS after each stage of one poll of a generated cluster.
fn mem(jobs: usize) {
    use slurm_gpu_exporter::cluster::collectors::{fairshare, nodes, partitions};
    use slurm_gpu_exporter::exposition::MetricSet;
    let v = Version::V0044;
    let shape = Shape::reference(jobs);
    println!("## live heap by stage of one poll, {jobs} jobs / {} nodes (this process, counting allocator)", shape.nodes);
    println!();
    println!("| stage | live heap after, MiB | Δ MiB | peak during stage, MiB |");
    println!("|---|---:|---:|---:|");
    let live = || mb(LIVE.load(Ordering::Relaxed));
    let mut last = live();
    let mut step = |what: &str| {
        let now = live();
        println!(
            "| {what} | {now:.1} | {:+.1} | {:.1} |",
            now - last,
            mb(PEAK.swap(LIVE.load(Ordering::Relaxed), Ordering::Relaxed))
        );
        last = now;
    };
    step("start");
    let node_body = gen::nodes_body(v, &shape);
    let part_body = gen::partitions_body(v, &shape);
    let share_body = gen::shares_body(v, &shape).unwrap();
    step("nodes/partitions/shares bodies generated (bench side)");
    let nodes_v = slurmrestd::parse_nodes(api(v), &mut &node_body[..]).unwrap();
    let parts_v = slurmrestd::parse_partitions(api(v), &mut &part_body[..]).unwrap();
    let shares_v = slurmrestd::parse_shares(api(v), &mut &share_body[..]).unwrap();
    drop((node_body, part_body, share_body));
    step("nodes, partitions, shares parsed (bodies dropped)");
    let mut agg = JobAggregates::new(false);
    {
        struct Chunks(JobsBody, Vec<u8>, usize);
        impl std::io::Read for Chunks {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.2 >= self.1.len() {
                    match self.0.next() {
                        Some(c) => {
                            self.1 = c;
                            self.2 = 0;
                        }
                        None => return Ok(0),
                    }
                }
                let n = buf.len().min(self.1.len() - self.2);
                buf[..n].copy_from_slice(&self.1[self.2..self.2 + n]);
                self.2 += n;
                Ok(n)
            }
        }
        let mut r = Chunks(JobsBody::new(v, shape, 64 * 1024), Vec::new(), 0);
        slurmrestd::parse_jobs(api(v), &mut r, &mut agg).unwrap();
    }
    println!(
        "| (JobAggregates: {} by_state, {} pending_by_reason, {} allocated, {} gpu_jobs rows) | | | |",
        agg.by_state.len(),
        agg.pending_by_reason.len(),
        agg.allocated.len(),
        agg.gpu_jobs.len()
    );
    step("jobs streamed into JobAggregates");
    let mut set = MetricSet::new();
    agg.collect(&mut set);
    nodes::collect(&nodes_v, &mut set);
    partitions::collect(&parts_v, &nodes_v, Some(&agg), &mut set);
    fairshare::collect(&shares_v, &mut set);
    let samples: usize = set.families().iter().map(|f| f.samples.len()).sum();
    println!("| ({samples} samples in the MetricSet) | | | |");
    step("MetricSet built");
    let mut by_family: Vec<(usize, &str)> = set
        .families()
        .iter()
        .map(|f| (f.samples.len(), f.name))
        .collect();
    by_family.sort_unstable_by(|a, b| b.cmp(a));
    let top: Vec<String> = by_family
        .iter()
        .take(40)
        .map(|(n, name)| format!("{name} {n}"))
        .collect();
    println!("| (largest families: {}) | | | |", top.join(", "));
    let t = Instant::now();
    let rendered = server::Rendered::from_set(&set);
    let took = t.elapsed();
    step(&format!(
        "both formats encoded into gzip (text {:.1} MiB → {:.2} MiB, OpenMetrics {:.1} MiB → {:.2} MiB, {:.2} s)",
        mb(rendered.text_len as u64),
        mb(rendered.text_gzip.len() as u64),
        mb(rendered.openmetrics_len as u64),
        mb(rendered.openmetrics_gzip.len() as u64),
        took.as_secs_f64()
    ));
    drop(set);
    step("MetricSet dropped (snapshot kept)");
    std::hint::black_box((&rendered, &agg, &nodes_v, &parts_v, &shares_v));
    println!();
}

// Incremental polling: a full /jobs poll vs an unchanged and an incremental
// poll of the same generated queue, in one process (mock on loopback).

/// The generated queue the incremental mock serves, changed by the bench.
struct LiveQueue {
    jobs: Vec<gen::GenJob>,
    /// Changed since the last full /jobs was served.
    changed: bool,
}

#[derive(Default)]
struct Served {
    /// (requests, bytes) of: full /jobs, "no change" /jobs, /jobs/state, /job/{id}.
    full: (AtomicU64, AtomicU64),
    unchanged: (AtomicU64, AtomicU64),
    state: (AtomicU64, AtomicU64),
    job: (AtomicU64, AtomicU64),
}

impl Served {
    fn add(c: &(AtomicU64, AtomicU64), bytes: usize) {
        c.0.fetch_add(1, Ordering::Relaxed);
        c.1.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn snapshot(&self) -> [(u64, u64); 4] {
        let g =
            |c: &(AtomicU64, AtomicU64)| (c.0.load(Ordering::Relaxed), c.1.load(Ordering::Relaxed));
        [
            g(&self.full),
            g(&self.unchanged),
            g(&self.state),
            g(&self.job),
        ]
    }
}

/// `/jobs/state` ids of a generated record, as Slurm 25.11 lists them
/// (`<job id>_<task>`; the generator gives a meta record its own id).
fn state_ids(j: &gen::GenJob) -> Vec<String> {
    match (j.array_job_id, j.array_task_id) {
        (a, Some(t)) if a > 0 => vec![format!("{}_{t}", j.id)],
        (a, None) if a > 0 && !j.array_task_string.is_empty() => {
            let a = j.id;
            let spec = j.array_task_string.split('%').next().unwrap_or("");
            let mut out = Vec::new();
            for part in spec.split(',').filter(|p| !p.is_empty()) {
                let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u64>(), hi.parse::<u64>()) {
                    for t in lo..=hi {
                        out.push(format!("{a}_{t}"));
                    }
                }
            }
            out
        }
        _ => vec![j.id.to_string()],
    }
}

async fn start_incremental_mock(
    shape: Shape,
    queue: Arc<std::sync::Mutex<LiveQueue>>,
    served: Arc<Served>,
) -> String {
    use slurm_gpu_exporter::testkit::replay::{full, Handler};
    let renderer = Arc::new(gen::JobsRenderer::new(Version::V0044));
    let handler: Handler = Arc::new(move |req: http::Request<hyper::body::Incoming>| {
        let queue = queue.clone();
        let served = served.clone();
        let renderer = renderer.clone();
        Box::pin(async move {
            let path = req.uri().path().trim_end_matches('/').to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let json = |b: Vec<u8>| full(http::StatusCode::OK, "application/json", b);
            if path == "/slurm/v0.0.44/jobs" {
                let since = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("update_time="));
                let jobs = {
                    let mut q = queue.lock().unwrap();
                    if since.is_some() && !q.changed {
                        None
                    } else {
                        q.changed = false;
                        Some(q.jobs.clone())
                    }
                };
                let Some(jobs) = jobs else {
                    let t =
                        |n: i64| serde_json::json!({"set": true, "infinite": false, "number": n});
                    let out = serde_json::to_vec_pretty(&serde_json::json!({
                        "jobs": [],
                        "last_backfill": t(1_795_374_626),
                        "last_update": t(1_795_374_636),
                        "meta": {},
                        "errors": [],
                        "warnings": [{
                            "description": format!("No job changes since update_time={}", since.unwrap_or("")),
                            "source": "_op_handler_jobs",
                        }],
                    }))
                    .unwrap();
                    Served::add(&served.unchanged, out.len());
                    return json(out);
                };
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                let served2 = served.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = renderer.head().to_vec();
                    let mut total = 0;
                    for (i, j) in jobs.iter().enumerate() {
                        if i > 0 {
                            out.extend_from_slice(b",\n");
                        }
                        renderer.job(j, &shape, &mut out);
                        if out.len() >= 1 << 20 {
                            total += out.len();
                            if tx
                                .blocking_send(bytes::Bytes::from(std::mem::take(&mut out)))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    out.extend_from_slice(renderer.tail());
                    total += out.len();
                    let _ = tx.blocking_send(bytes::Bytes::from(out));
                    Served::add(&served2.full, total);
                });
                return streamed_json(rx);
            }
            if path == "/slurm/v0.0.44/jobs/state" {
                let mut out = b"{\n  \"jobs\": [".to_vec();
                {
                    let q = queue.lock().unwrap();
                    let mut first = true;
                    for j in &q.jobs {
                        for id in state_ids(j) {
                            if !first {
                                out.push(b',');
                            }
                            first = false;
                            let _ = write!(out, "\n    {{\n      \"job_id\": \"{id}\",\n      \"state\": [\n        \"{}\"", j.state);
                            if let Some(f) = j.flag {
                                let _ = write!(out, ",\n        \"{f}\"");
                            }
                            out.extend_from_slice(b"\n      ]\n    }");
                        }
                    }
                }
                out.extend_from_slice(
                    b"\n  ],\n  \"meta\": {},\n  \"errors\": [],\n  \"warnings\": []\n}",
                );
                Served::add(&served.state, out.len());
                return json(out);
            }
            if let Some(id) = path.strip_prefix("/slurm/v0.0.44/job/") {
                let id: u64 = id.parse().unwrap_or(0);
                let jobs: Vec<gen::GenJob> = {
                    let q = queue.lock().unwrap();
                    q.jobs
                        .iter()
                        .filter(|j| j.id == id || (j.array_job_id == id && id > 0))
                        .cloned()
                        .collect()
                };
                if jobs.is_empty() {
                    return full(
                        http::StatusCode::NOT_FOUND,
                        "application/json",
                        r#"{"errors":[{"error":"Invalid job id specified"}],"jobs":[]}"#,
                    );
                }
                let mut out = renderer.head().to_vec();
                for (i, j) in jobs.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    renderer.job(j, &shape, &mut out);
                }
                out.extend_from_slice(renderer.tail());
                Served::add(&served.job, out.len());
                return json(out);
            }
            if path == "/slurm/v0.0.44/ping" {
                return json(gen::ping_body(Version::V0044));
            }
            full(
                http::StatusCode::NOT_FOUND,
                "text/plain",
                "Unable to find path",
            )
        })
    });
    serve_on_loopback(handler).await
}

/// Job metrics of a metric set (what incremental polling must keep exact).
fn job_text(set: &slurm_gpu_exporter::exposition::MetricSet) -> String {
    set.encode_text()
        .lines()
        .filter(|l| {
            let n = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            n.starts_with("slurm_job") || n.starts_with("slurm_cluster_jobs")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Changes `n` jobs spread over the queue: half leave it, half change state
/// (pending → cancelled, running → completed, others → cancelled).
fn change_jobs(q: &mut LiveQueue, n: usize, round: u64) {
    let len = q.jobs.len();
    let step = (len / n.max(1)).max(1);
    let mut remove = std::collections::HashSet::new();
    for k in 0..n {
        let i = (k * step + round as usize * 7) % len;
        if k % 2 == 0 {
            remove.insert(q.jobs[i].id);
        } else {
            let j = &mut q.jobs[i];
            j.state = match j.state {
                "RUNNING" => "COMPLETED",
                _ => "CANCELLED",
            };
            j.flag = None;
            j.end = Some(1_795_374_636);
        }
    }
    q.jobs.retain(|j| !remove.contains(&j.id));
    q.changed = true;
}

fn incremental(jobs: usize) {
    use slurm_gpu_exporter::cluster::jobtable::JobTable;
    use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
    use slurm_gpu_exporter::slurmrestd::client::{Client, ClientOptions, TokenSource};
    let shape = Shape::reference(jobs);
    let generated: Vec<gen::GenJob> = gen::JobStream::new(shape).collect();
    let records = generated.len();
    let queue = Arc::new(std::sync::Mutex::new(LiveQueue {
        jobs: generated,
        changed: false,
    }));
    let served = Arc::new(Served::default());
    let rt = runtime();
    rt.block_on(async {
        let url = start_incremental_mock(shape, queue.clone(), served.clone()).await;
        let client = Arc::new(
            Client::new(ClientOptions {
                url,
                token: TokenSource::None,
                user_name: None,
                timeout: Duration::from_secs(600),
                max_body_bytes: 8 << 30,
                ca_file: None,
            })
            .unwrap(),
        );
        let base = PollOptions {
            pinned_version: Some(ApiVersion::V0044),
            nodes: false,
            partitions: false,
            fairshare: false,
            scheduler: false,
            ..PollOptions::default()
        };
        let mut full_p = Poller::new(client.clone(), base.clone());
        let mut incr_p = Poller::new(
            client.clone(),
            PollOptions {
                jobs_update_time: true,
                jobs_full_poll_every: 1_000,
                ..base.clone()
            },
        );
        let mut cond_p = Poller::new(
            client.clone(),
            PollOptions {
                jobs_update_time: true,
                jobs_full_poll_every: 1,
                ..base.clone()
            },
        );
        // One measured poll: time, and what the mock served during it.
        async fn measure(p: &mut Poller, served: &Served) -> (Duration, [(u64, u64); 4], String) {
            let before = served.snapshot();
            let t = Instant::now();
            let set = p.poll().await;
            let d = t.elapsed();
            let after = served.snapshot();
            let mut delta = [(0, 0); 4];
            for i in 0..4 {
                delta[i] = (after[i].0 - before[i].0, after[i].1 - before[i].1);
            }
            (d, delta, job_text(&set))
        }
        println!("## incremental polling: {jobs} generated v0.0.44 jobs ({records} records), one process, mock on loopback");
        println!();
        let (t_full, b_full, _) = measure(&mut full_p, &served).await;
        let full_bytes = b_full[0].1;
        let _ = measure(&mut incr_p, &served).await; // builds the table
        let _ = measure(&mut cond_p, &served).await;
        println!("| poll | requests | MB fetched | × full bytes | seconds | × full time | re-fetched jobs | exact |");
        println!("|---|---:|---:|---:|---:|---:|---:|---|");
        let row = |what: &str, d: Duration, b: [(u64, u64); 4], refetched: u64, exact: &str| {
            let reqs: u64 = b.iter().map(|x| x.0).sum();
            let bytes: u64 = b.iter().map(|x| x.1).sum();
            println!(
                "| {what} | {reqs} | {:.3} | {:.5} | {:.3} | {:.4} | {refetched} | {exact} |",
                bytes as f64 / 1e6,
                bytes as f64 / full_bytes as f64,
                d.as_secs_f64(),
                d.as_secs_f64() / t_full.as_secs_f64()
            );
        };
        row("full `/jobs` (baseline)", t_full, b_full, 0, "");
        let (d, b, _) = measure(&mut cond_p, &served).await;
        row("unchanged: `?update_time=` → empty list + warning", d, b, 0, "");
        let (d, b, _) = measure(&mut incr_p, &served).await;
        row("incremental, nothing changed (`/jobs/state` only)", d, b, b[3].0, "");
        for (round, pct) in [(1u64, 0.1f64), (2, 1.0)] {
            let n = (records as f64 * pct / 100.0).round() as usize;
            change_jobs(&mut queue.lock().unwrap(), n, round);
            let (d, b, text) = measure(&mut incr_p, &served).await;
            let (df, bf, full_text) = measure(&mut full_p, &served).await;
            let exact = if text == full_text { "= full" } else { "DIFFERS" };
            row(
                &format!("incremental, {pct}% of jobs changed/removed ({n})"),
                d,
                b,
                b[3].0,
                exact,
            );
            row(&format!("full `/jobs` of the same queue ({pct}%)"), df, bf, 0, "");
        }
        println!();
        if let Some((len, heap)) = incr_p.job_table_size() {
            println!(
                "job table: {len} jobs, ~{:.1} MiB by its own estimate ({:.0} bytes/job)",
                mb(heap as u64),
                heap as f64 / len as f64
            );
        }
    });
    drop(rt);
    // The table's real heap, by the counting allocator: parse one full body
    // (generated in chunks, never whole) into a JobTable.
    let live_before = LIVE.load(Ordering::Relaxed);
    let mut table = JobTable::new();
    {
        let mut body: Vec<u8> = Vec::new();
        let mut reader_chunks = JobsBody::new(Version::V0044, shape, 1 << 20);
        struct R<'a>(&'a mut JobsBody, &'a mut Vec<u8>, usize);
        impl std::io::Read for R<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.2 >= self.1.len() {
                    match self.0.next() {
                        Some(c) => {
                            *self.1 = c;
                            self.2 = 0;
                        }
                        None => return Ok(0),
                    }
                }
                let n = buf.len().min(self.1.len() - self.2);
                buf[..n].copy_from_slice(&self.1[self.2..self.2 + n]);
                self.2 += n;
                Ok(n)
            }
        }
        let mut r = R(&mut reader_chunks, &mut body, 0);
        slurmrestd::parse_jobs(ApiVersion::V0044, &mut r, &mut table).unwrap();
    }
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(live_before);
    println!(
        "job table heap (counting allocator): {:.1} MiB for {} jobs = {:.0} bytes/job (own estimate {:.0})",
        mb(heap),
        table.len(),
        heap as f64 / table.len() as f64,
        table.heap_bytes() as f64 / table.len() as f64
    );
    let t = best(3, || {
        std::hint::black_box(JobAggregates::from_table(&table, false, Some(0)));
    });
    println!(
        "rebuilding JobAggregates from the table (per poll): {:.1} ms, best of 3",
        t.as_secs_f64() * 1e3
    );
}
