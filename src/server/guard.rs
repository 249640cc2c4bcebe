//! The request guard of `--web.config.file`: rate limit (token bucket),
//! basic auth (probe paths exempt) and response headers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{auth, RateLimit};

pub(super) struct Guard {
    pub(super) auth: Option<Arc<auth::BasicAuth>>,
    pub(super) exempt: Vec<String>,
    pub(super) headers: Vec<(header::HeaderName, HeaderValue)>,
    pub(super) limiter: Option<Mutex<Bucket>>,
}

/// Token bucket: `burst` tokens, one more every `interval`.
pub(super) struct Bucket {
    pub(super) rate: RateLimit,
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Bucket {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64()
            / self
                .rate
                .interval
                .max(Duration::from_nanos(1))
                .as_secs_f64();
        self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(super) async fn guard_layer(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let mut resp = guarded(&g, req, next).await;
    let h = resp.headers_mut();
    for (name, value) in &g.headers {
        h.insert(name.clone(), value.clone());
    }
    resp
}

async fn guarded(g: &Guard, req: Request, next: Next) -> Response {
    if let Some(l) = &g.limiter {
        if !l.lock().unwrap_or_else(|e| e.into_inner()).allow() {
            return (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response();
        }
    }
    if let Some(auth) = &g.auth {
        let path = req.uri().path();
        if !g.exempt.iter().any(|p| p == path)
            && !auth.check(req.headers().get(header::AUTHORIZATION)).await
        {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"slurm-gpu-exporter\", charset=\"UTF-8\"",
                    ),
                )],
                "unauthorized\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}
