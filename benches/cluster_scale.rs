//! Cluster-scale benchmarks of the cluster scraper, on generated slurmrestd
//! responses shaped like the recorded fixtures (see `support/gen.rs`).
//!
//! ```text
//! cargo bench --bench cluster_scale -- ingest [--jobs N] [--reps N]
//! cargo bench --bench cluster_scale -- rss [--jobs N,N...]
//! cargo bench --bench cluster_scale -- scrape [--jobs N] [--scrapers N] [--secs N]
//! cargo bench --bench cluster_scale -- gen --out DIR [--version v0.0.44] [--jobs N]
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
use slurm_gpu_exporter::cluster::collectors::jobs::JobAggregates;
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

/// Serves v0.0.44 `shape` on loopback: `/jobs` is rendered while it is sent
/// (never held whole), the small endpoints come from memory.
async fn start_mock(shape: Shape, counts: Arc<Counts>) -> String {
    use http_body_util::BodyExt as _;
    use slurm_gpu_exporter::replay::{self, full, Handler};
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
                let body = http_body_util::StreamBody::new(ChunkStream(rx)).boxed();
                let mut r = http::Response::new(body);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return r;
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(replay::serve_tcp(listener, handler));
    url
}

struct Exporter {
    child: std::process::Child,
    addr: String,
}

impl Exporter {
    fn start(url: &str, poll_interval: &str) -> Exporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
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
        .worker_threads(2)
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
    println!("| jobs | /jobs body MB | first poll s | VmHWM after 1 poll, MiB | VmHWM after 4 polls, MiB | VmRSS then, MiB | /metrics text MiB | slurm_jobs series |");
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
                .filter(|l| l.starts_with("slurm_jobs{"))
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
                let t = Instant::now();
                match conn.get_discard("/metrics").await {
                    Ok((200, n)) => {
                        lat.push(t.elapsed());
                        bytes = n;
                    }
                    _ => {
                        errors += 1;
                        conn = Conn::open(&addr).await.expect("reconnect");
                    }
                }
            }
            (lat, errors, bytes)
        }));
    }
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
                let t = Instant::now();
                match conn.get_discard("/metrics").await {
                    Ok((200, n)) => {
                        lat.push(t.elapsed());
                        bytes = n;
                    }
                    _ => {
                        errors += 1;
                        conn = Conn::open(&addr).await.expect("reconnect");
                    }
                }
                next += period;
            }
            (lat, errors, bytes)
        }));
    }
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `/metrics` latency with 50 concurrent scrapers against the snapshot of a
/// 10k-node / 100k-job cluster, first with no poll running (interval 1h),
/// then while the exporter re-polls every `--interval` seconds; and the
/// number of `/jobs` requests slurmrestd sees with and without scrapers.
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
        println!("| polling | scrapers | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | body MiB | /jobs requests to slurmrestd |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let row = |what: &str, n: usize, r: Option<&LoadResult>, jobs_reqs: u64| match r {
            Some(r) => println!(
                "| {what} | {n} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {jobs_reqs} |",
                r.requests,
                r.errors,
                r.requests as f64 / secs as f64,
                ms(r.p50),
                ms(r.p90),
                ms(r.p99),
                ms(r.max),
                mb(r.bytes as u64)
            ),
            None => println!("| {what} | 0 | – | – | – | – | – | – | – | – | {jobs_reqs} |"),
        };

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
            let r = load(&exp.addr, scrapers, secs).await;
            row(
                "baseline: 100 nodes / 1k jobs, none (1h)",
                scrapers,
                Some(&r),
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
            let r = load(&exp.addr, scrapers, secs).await;
            row(
                &format!("{} nodes / {} jobs, none (1h)", mid.nodes, mid.jobs),
                scrapers,
                Some(&r),
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
            let r = load(&exp.addr, scrapers, secs).await;
            row(
                "none (interval 1h)",
                scrapers,
                Some(&r),
                counts.jobs.load(Ordering::Relaxed) - before,
            );
            std::io::stdout().flush().ok();
            for aligned in [false, true] {
                let r = load_paced(&exp.addr, scrapers, secs, Duration::from_secs(1), aligned).await;
                row(
                    if aligned {
                        "none (1h); each scraper once a second, all in the same instant"
                    } else {
                        "none (1h); each scraper once a second, spread over the second"
                    },
                    scrapers,
                    Some(&r),
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
        let r = load(&exp.addr, scrapers, secs).await;
        let during = counts.jobs.load(Ordering::Relaxed) - before;
        row(&format!("every {interval}s"), scrapers, Some(&r), during);
        let before = counts.jobs.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        row(
            &format!("every {interval}s"),
            0,
            None,
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
