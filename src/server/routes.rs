//! The routes: `/metrics` (copied out of the latest snapshots), `/healthz`,
//! `/readyz`, the landing page and bundled files.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use super::{files, About};
use crate::exposition::snapshot::*;

#[derive(Clone)]
struct AppState {
    publishers: Arc<Vec<Publisher>>,
    telemetry_path: String,
    title: &'static str,
    about: Option<About>,
}

pub fn router(telemetry_path: &str, title: &'static str, publishers: Vec<Publisher>) -> Router {
    router_about(telemetry_path, title, publishers, None)
}

pub(super) fn router_about(
    telemetry_path: &str,
    title: &'static str,
    publishers: Vec<Publisher>,
    about: Option<About>,
) -> Router {
    let state = AppState {
        publishers: Arc::new(publishers),
        telemetry_path: telemetry_path.to_string(),
        title,
        about,
    };
    Router::new()
        .route(telemetry_path, get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(landing))
        .route("/{dir}/{name}", get(bundled_file))
        .with_state(state)
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshots: Vec<Arc<Rendered>> =
        state.publishers.iter().filter_map(|p| p.latest()).collect();
    if snapshots.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no data collected yet; retry after the first collection\n",
        )
            .into_response();
    }
    let om = wants_openmetrics(&headers);
    let ct = if om {
        OPENMETRICS_CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    };
    if snapshots.len() == 1 && accepts_gzip(&headers) {
        let s = &snapshots[0];
        let body = if om {
            s.openmetrics_gzip.clone()
        } else {
            s.text_gzip.clone()
        };
        let mut resp = body.into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        return resp;
    }
    let body = if snapshots.len() == 1 {
        let s = &snapshots[0];
        if om {
            s.openmetrics()
        } else {
            s.text()
        }
    } else {
        let mut buf = Vec::new();
        for s in &snapshots {
            if om {
                // Only the final `# EOF` may remain.
                let b = s.openmetrics();
                buf.extend_from_slice(b.strip_suffix(b"# EOF\n").unwrap_or(&b));
            } else {
                buf.extend_from_slice(&s.text());
            }
        }
        if om {
            buf.extend_from_slice(b"# EOF\n");
        }
        Bytes::from(buf)
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, not with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name == "gzip" || name == "*") && !refused
        })
}

async fn readyz(State(state): State<AppState>) -> Response {
    let snapshots: Vec<_> = state.publishers.iter().map(|p| p.latest()).collect();
    if is_ready(&snapshots) {
        "ready\n".into_response()
    } else if snapshots.iter().any(Option::is_none) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "first collection pending\n",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no data: every source failed (see the landing page and the logs)\n",
        )
            .into_response()
    }
}

async fn bundled_file(
    axum::extract::Path((dir, name)): axum::extract::Path<(String, String)>,
) -> Response {
    match files::get(&dir, &name) {
        Some((ct, body)) => ([(header::CONTENT_TYPE, ct)], body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let mut rows = String::new();
    let snapshots: Vec<_> = state.publishers.iter().map(|p| p.latest()).collect();
    for s in &snapshots {
        match s {
            None => rows.push_str("<tr><td>(first collection pending)</td><td>-</td></tr>"),
            Some(r) => {
                for h in &r.health {
                    let (class, word) = match (h.up, h.stale) {
                        (true, _) => ("up", "up"),
                        (false, true) => ("stale", "failing; last good data served"),
                        (false, false) => ("down", "down"),
                    };
                    rows.push_str(&format!(
                        "<tr><td>{}</td><td class=\"{class}\">{word}</td></tr>",
                        html_escape(&h.source)
                    ));
                }
            }
        }
    }
    let ready = if is_ready(&snapshots) {
        "ready"
    } else {
        "not ready"
    };
    let about = state.about.as_ref().map(|f| f()).unwrap_or_default();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}\
         .up{{color:#080}}.down{{color:#b00;font-weight:bold}}.stale{{color:#a60}}</style></head><body>\
         <h1>{t}</h1><p>slurm-gpu-exporter {v}</p>{about}\
         <h2>Endpoints</h2><ul>\
         <li><a href=\"{p}\">{p}</a>: the metrics (Prometheus text, or OpenMetrics on request)</li>\
         <li><a href=\"/healthz\">/healthz</a>: the process answers</li>\
         <li><a href=\"/readyz\">/readyz</a>: {ready} (ready once a source has data to serve)</li></ul>\
         <h2>Sources</h2><table><tr><th>Source</th><th>State</th></tr>{rows}</table>\
         <h2>Documentation (of this build)</h2><ul>{docs}</ul>\
         <h2>Grafana dashboards to import</h2>\
         <p>Grafana: Dashboards → New → Import, upload the file, pick the Prometheus data source.</p><ul>{dashboards}</ul>\
         <h2>Prometheus recording and alert rules</h2>\
         <p>Load all of them (<code>rule_files</code>): the dashboards use the recording rules.</p><ul>{rules}</ul>\
         </body></html>\n",
        t = state.title,
        v = env!("CARGO_PKG_VERSION"),
        p = html_escape(&state.telemetry_path),
        docs = files::links("docs"),
        dashboards = files::links("dashboards"),
        rules = files::links("alerts"),
    ))
}
