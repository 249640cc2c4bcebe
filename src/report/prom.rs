//! A minimal client for the Prometheus HTTP query API (`/api/v1/query`),
//! which Prometheus, Thanos Query, Grafana Mimir and VictoriaMetrics all serve.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::slurmrestd::client::{Client, ClientOptions, FetchError, TokenSource};
use crate::slurmrestd::ParseError;

/// One series: labels without `__name__`, and its samples (time, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

impl Series {
    /// The last sample's value (an instant vector has exactly one).
    pub fn value(&self) -> Option<f64> {
        self.samples.last().map(|s| s.1)
    }

    /// A stable identity for matching the same series across queries.
    pub fn key(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{url}: {source}")]
    Fetch { url: String, source: FetchError },
    #[error("{url}: {message}")]
    Api { url: String, message: String },
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn num(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

/// Parses an `/api/v1/query` answer (vector or matrix).
pub fn parse_response(body: &mut dyn std::io::Read) -> Result<Vec<Series>, ParseError> {
    let r: Response = serde_json::from_reader(body)?;
    if r.status != "success" {
        return Err(ParseError::Slurm(format!(
            "query failed: {}: {}",
            r.error_type.unwrap_or_default(),
            r.error.unwrap_or_default()
        )));
    }
    let Some(data) = r.data else {
        return Ok(Vec::new());
    };
    match data.result_type.as_str() {
        "vector" | "matrix" => {}
        other => {
            return Err(ParseError::Slurm(format!(
                "expected a vector or matrix result, got {other}"
            )))
        }
    }
    let items: Vec<Item> = serde_json::from_value(data.result)?;
    Ok(items
        .into_iter()
        .map(|mut it| {
            it.metric.remove("__name__");
            let mut samples: Vec<(f64, f64)> =
                it.values.iter().map(|(t, v)| (*t, num(v))).collect();
            if let Some((t, v)) = &it.value {
                samples.push((*t, num(v)));
            }
            Series {
                labels: it.metric,
                samples,
            }
        })
        .collect())
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub struct Prometheus {
    pub client: Client,
    pub url: String,
}

/// How to reach a Prometheus-compatible query API: one set of connection
/// flags for `report`, `report job`/`job-report` and `idle-jobs` (built by
/// the CLI layer, `crate::cli::report::PromConnArgs`).
#[derive(Debug, Clone, PartialEq)]
pub struct PromOptions {
    /// Query API base URL (`--prometheus`).
    pub url: String,
    /// Extra headers, `Name: value` each.
    pub headers: Vec<String>,
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA bundle for an https:// URL (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// Deadline for one query.
    pub timeout: Duration,
    /// Extra label matchers for every series read, braces optional.
    pub selector: String,
}

impl PromOptions {
    pub fn connect(&self) -> anyhow::Result<Prometheus> {
        let headers = super::query_headers(&self.headers, self.bearer_token_file.as_deref())?;
        let client = Client::new(ClientOptions {
            url: self.url.clone(),
            token: TokenSource::None,
            user_name: None,
            timeout: self.timeout,
            max_body_bytes: 1 << 30,
            ca_file: self.ca_file.clone(),
        })
        .with_context(|| format!("invalid --prometheus {:?}", self.url))?
        .with_headers(headers);
        Ok(Prometheus {
            url: client.display().to_string(),
            client,
        })
    }

    /// The extra matchers without braces, ready to append after a `,`.
    pub fn extra(&self) -> String {
        self.selector
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim()
            .to_string()
    }
}

impl Prometheus {
    /// Evaluates `query` at Unix time `at`.
    pub async fn query(&self, query: &str, at: i64) -> Result<Vec<Series>, QueryError> {
        let path = format!("/api/v1/query?query={}&time={at}", encode(query));
        tracing::debug!(query, at, "prometheus query");
        self.client
            .get(&path, parse_response)
            .await
            .map(|f| f.value)
            .map_err(|source| match source {
                FetchError::Parse {
                    source: ParseError::Slurm(message),
                    ..
                } => QueryError::Api {
                    url: self.url.clone(),
                    message,
                },
                source => QueryError::Fetch {
                    url: self.url.clone(),
                    source,
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_matrix_and_errors() {
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"x","account":"a"},"value":[1700000000.5,"12.5"]}]}}"#;
        let s = parse_response(&mut &v[..]).unwrap();
        assert_eq!(s[0].labels.get("account").map(String::as_str), Some("a"));
        assert!(!s[0].labels.contains_key("__name__"));
        assert_eq!(s[0].value(), Some(12.5));
        let m = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[1,"1"],[2,"+Inf"]]}]}}"#;
        let s = parse_response(&mut &m[..]).unwrap();
        assert_eq!(s[0].samples, vec![(1.0, 1.0), (2.0, f64::INFINITY)]);
        let e = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let e = parse_response(&mut &e[..]).unwrap_err().to_string();
        assert!(e.contains("bad_data: parse error"), "{e}");
        assert_eq!(encode("a{b=\"c\"}[1s]"), "a%7Bb%3D%22c%22%7D%5B1s%5D");
    }
}
