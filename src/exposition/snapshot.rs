//! The snapshot store: each producer's latest [`MetricSet`], encoded once
//! per collection (text 0.0.4 gzipped, OpenMetrics on demand) and handed to
//! every scrape as bytes.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::MetricSet;

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One collection, encoded in both formats.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Classic text, gzip-compressed.
    pub text_gzip: Bytes,
    /// OpenMetrics, gzip-compressed.
    pub openmetrics_gzip: Bytes,
    pub text_len: usize,
    pub openmetrics_len: usize,
    /// Health of each data source in this collection, for `/readyz` and
    /// the landing page.
    pub health: Vec<SourceHealth>,
}

/// One data source of a producer: a slurmrestd endpoint of the cluster
/// scraper or a collector of the node agent.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    /// `slurmrestd /jobs`, `collector gpu`, ...
    pub source: String,
    /// Its last poll or collection succeeded.
    pub up: bool,
    /// It failed, and the last good data is served instead.
    pub stale: bool,
}

fn source_health(set: &MetricSet) -> Vec<SourceHealth> {
    let mut out = Vec::new();
    for h in set.health_families() {
        let Some(f) = set.families().iter().find(|f| f.name == h.up.name) else {
            continue;
        };
        for s in &f.samples {
            let name = s.label(h.label).unwrap_or_default().to_string();
            let stale = h
                .stale
                .is_some_and(|d| set.value(d.name, &[(h.label, &name)]) == Some(1.0));
            out.push(SourceHealth {
                source: format!("{}{name}", h.prefix),
                up: s.value == 1.0,
                stale,
            });
        }
    }
    out
}

/// Ready: every producer has published, and each one that reports its
/// sources has at least one source whose data it serves (up, or failing
/// with its last good data kept). A scraper whose every poll failed, or whose
/// kept data has expired, is not ready.
pub fn is_ready(snapshots: &[Option<Arc<Rendered>>]) -> bool {
    snapshots.iter().all(|s| match s {
        None => false,
        Some(r) => r.health.is_empty() || r.health.iter().any(|h| h.up || h.stale),
    })
}

// Prometheus always asks for gzip, so snapshots are kept compressed only:
// scrapes of a 20 MiB cluster snapshot move ~6x fewer bytes and the kept
// snapshot costs a sixth of the memory. Clients without gzip get it inflated.
// Encoders write straight into the compressor, so the plain text of a large
// snapshot never exists in memory as a whole.
fn gzip_encoded(
    encode: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<u64>,
) -> (Bytes, usize) {
    use std::io::Write as _;
    let gz = flate2::write::GzEncoder::new(Vec::new(), GZIP_LEVEL);
    // Deflate handles large writes better than one per sample line.
    let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, gz);
    // Writing into a Vec cannot fail.
    let len = encode(&mut buffered).unwrap_or(0);
    let _ = buffered.flush();
    let mut compressed = buffered
        .into_inner()
        .ok()
        .and_then(|gz| gz.finish().ok())
        .unwrap_or_default();
    compressed.shrink_to_fit();
    (Bytes::from(compressed), len as usize)
}

/// Compression costs once per collection, bytes cost on every scrape.
const GZIP_LEVEL: flate2::Compression = flate2::Compression::new(6);

fn gunzip(data: &[u8], len: usize) -> Bytes {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(len);
    // Our own compressed bytes: a failure would be a bug, and yields an empty body.
    let _ = flate2::read::GzDecoder::new(data).read_to_end(&mut out);
    Bytes::from(out)
}

impl Rendered {
    pub fn from_set(set: &MetricSet) -> Self {
        let (text_gzip, text_len) = gzip_encoded(|w| set.write_text(w));
        let (openmetrics_gzip, openmetrics_len) = gzip_encoded(|w| set.write_openmetrics(w));
        Rendered {
            text_gzip,
            openmetrics_gzip,
            text_len,
            openmetrics_len,
            health: source_health(set),
        }
    }

    pub fn text(&self) -> Bytes {
        gunzip(&self.text_gzip, self.text_len)
    }

    pub fn openmetrics(&self) -> Bytes {
        gunzip(&self.openmetrics_gzip, self.openmetrics_len)
    }
}

/// Latest metrics of one producer (the cluster poller, the node agent).
/// Producers publish; the HTTP handlers read. A clone shares the slot.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    slot: Arc<RwLock<Option<Arc<Rendered>>>>,
}

impl Publisher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn publish(&self, set: &MetricSet) {
        let rendered = Arc::new(Rendered::from_set(set));
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(rendered);
    }

    pub fn latest(&self) -> Option<Arc<Rendered>> {
        self.slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
