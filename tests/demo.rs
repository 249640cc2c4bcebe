//! The README's first command: `demo` serves the cluster scraper's metrics
//! from the bundled recordings and the node agent's from its demo node, with
//! the GPU-by-account join intact, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn demo_serves_cluster_and_node_metrics() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
        .args(["demo", "--web.listen-address", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Some(r) = get(&addr, "/metrics") {
            if r.starts_with("HTTP/1.1 200") && r.contains("slurm_gpu_job_info{") {
                body = r;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM: the exporter must shut down cleanly.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exited with {status}");

    assert!(
        !body.is_empty(),
        "demo never served node and cluster metrics"
    );
    // Recorded cluster: job 29 holds GPUs 0 and 1 of node vm (gres_detail IDX:0-1).
    assert!(body.contains(
        "slurm_job_gpus{job_id=\"29\",account=\"ai_project\",user=\"gildong\",partition=\"gpu\",node=\"vm\",gpu=\"0\"} 1"
    ));
    // The node agent attributes the same GPU to the same job.
    assert!(body.contains("slurm_gpu_job_info{node=\"vm\",gpu=\"0\""));
    assert!(body.contains("job_id=\"29\",user=\"gildong\",account=\"ai_project\"} 1"));
    assert!(body.contains("slurm_exporter_slurmrestd_up 1"));
    assert!(body.contains("slurm_node_collector_up{node=\"vm\",collector=\"efa\"} 1"));
}
