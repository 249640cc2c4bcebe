//! The typed slurmrestd API: one method per endpoint. It owns the paths
//! (`/slurm/vX/...`, `/slurmdb/vX/...`), which API version takes which
//! query, and which parser reads the answer; callers never build a URL.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;

use super::client::{Client, FetchError, Fetched};
use super::slurmdb::DbJob;
use super::{ApiVersion, JobSink, ListMeta, ParseError};
use crate::model::{Association, Diag, Job, Node, Partition, Qos, Share};

/// A slurmrestd server spoken to through a [`Client`].
#[derive(Debug, Clone)]
pub struct Api {
    client: Arc<Client>,
}

/// A job's state as `/jobs/state` lists it: `(id as listed: "12" or
/// "<job_id>_<task>", state words)`.
pub type JobStateEntry = (String, Vec<String>);

impl Api {
    pub fn new(client: Arc<Client>) -> Api {
        Api { client }
    }

    /// The transport (token refresh and expiry, the URL for logs).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// `GET /slurm/vX/ping/`, body discarded: whether `v` is served.
    pub async fn ping(&self, v: ApiVersion) -> Result<(), FetchError> {
        self.client
            .get(&paths::slurm(v, "ping/"), drain)
            .await
            .map(drop)
    }

    /// Probes `/slurm/vX/ping` newest first. Only a 404 means "not this
    /// version"; any other failure (auth, connect) ends detection.
    pub async fn detect_version(&self) -> Result<ApiVersion, FetchError> {
        let mut last = None;
        for v in ApiVersion::NEWEST_FIRST {
            match self.ping(v).await {
                Ok(()) => return Ok(v),
                Err(e) if e.is_not_found() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| FetchError::InvalidUrl {
            url: self.client.display().to_string(),
            reason: "no known API version answered".into(),
        }))
    }

    /// The known versions other than `except` whose `/ping` answers (one
    /// request each, newest first).
    pub async fn served_versions(&self, except: ApiVersion) -> Vec<ApiVersion> {
        let mut served = Vec::new();
        for other in ApiVersion::NEWEST_FIRST
            .into_iter()
            .filter(|o| *o != except)
        {
            if self.ping(other).await.is_ok() {
                served.push(other);
            }
        }
        served
    }

    /// `GET /slurm/vX/jobs/` (`?update_time=` with `since`), stream-parsed
    /// into a fresh `S`. `Ok(None)`: 304 Not Modified (v0.0.38).
    pub async fn jobs<S>(
        &self,
        v: ApiVersion,
        since: Option<i64>,
    ) -> Result<Option<Fetched<(S, ListMeta)>>, FetchError>
    where
        S: JobSink + Default + Send + 'static,
    {
        let path = match since {
            Some(t) => paths::slurm(v, &format!("jobs/?update_time={t}")),
            None => paths::slurm(v, "jobs/"),
        };
        self.client
            .get_conditional(&path, move |r| {
                let mut sink = S::default();
                let meta = super::parse_jobs_meta(v, r, &mut sink)?;
                Ok((sink, meta))
            })
            .await
    }

    /// `GET /slurm/vX/jobs/state/` (v0.0.40+).
    pub async fn jobs_state(
        &self,
        v: ApiVersion,
    ) -> Result<Fetched<Vec<JobStateEntry>>, FetchError> {
        self.client
            .get(&paths::slurm(v, "jobs/state/"), move |r| {
                super::parse_jobs_state(v, r)
            })
            .await
    }

    /// `GET /slurm/vX/job/{id}`: the job, or an array's tasks.
    pub async fn job(&self, v: ApiVersion, id: u64) -> Result<Fetched<Vec<Job>>, FetchError> {
        self.client
            .get(&paths::job(v, Some(id)), move |r| {
                let mut jobs: Vec<Job> = Vec::new();
                super::parse_jobs(v, r, &mut jobs)?;
                Ok(jobs)
            })
            .await
    }

    /// `DELETE /slurm/vX/job/{id}`: cancels the job (SIGKILL, as `scancel`
    /// does by default). The answer's `errors[]` make it an error; the
    /// answer is returned for its per-job `status` (v0.0.42+).
    pub async fn cancel_job(
        &self,
        v: ApiVersion,
        id: u64,
    ) -> Result<serde_json::Value, FetchError> {
        self.client.delete(&paths::job(v, Some(id))).await
    }

    /// `GET /slurm/vX/nodes/`.
    pub async fn nodes(&self, v: ApiVersion) -> Result<Fetched<(Vec<Node>, ListMeta)>, FetchError> {
        self.client
            .get(&paths::slurm(v, "nodes/"), move |r| {
                super::parse_nodes_meta(v, r)
            })
            .await
    }

    /// `GET /slurm/vX/nodes/?update_time={since}`. `Ok(None)`: 304 Not
    /// Modified (v0.0.38); later versions say "unchanged" in the body.
    pub async fn nodes_since(
        &self,
        v: ApiVersion,
        since: i64,
    ) -> Result<Option<Fetched<(Vec<Node>, ListMeta)>>, FetchError> {
        let path = paths::slurm(v, &format!("nodes/?update_time={since}"));
        self.client
            .get_conditional(&path, move |r| super::parse_nodes_meta(v, r))
            .await
    }

    /// `GET /slurm/vX/partitions/`.
    pub async fn partitions(&self, v: ApiVersion) -> Result<Fetched<Vec<Partition>>, FetchError> {
        self.client
            .get(&paths::slurm(v, "partitions/"), move |r| {
                super::parse_partitions(v, r)
            })
            .await
    }

    /// `GET /slurm/vX/shares` (v0.0.39+).
    pub async fn shares(&self, v: ApiVersion) -> Result<Fetched<Vec<Share>>, FetchError> {
        self.client
            .get(&paths::slurm(v, "shares"), move |r| {
                super::parse_shares(v, r)
            })
            .await
    }

    /// `GET /slurm/vX/diag/`.
    pub async fn diag(&self, v: ApiVersion) -> Result<Fetched<Diag>, FetchError> {
        self.client
            .get(&paths::slurm(v, "diag/"), move |r| super::parse_diag(v, r))
            .await
    }

    /// `GET /slurmdb/vX/associations/`.
    pub async fn associations(
        &self,
        v: ApiVersion,
    ) -> Result<Fetched<Vec<Association>>, FetchError> {
        self.client
            .get(&paths::slurmdb(v, "associations/"), move |r| {
                super::parse_associations(v, r)
            })
            .await
    }

    /// `POST /slurmdb/vX/associations/` with `body` (an association list):
    /// sets the limits named in it.
    pub async fn post_associations(
        &self,
        v: ApiVersion,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, FetchError> {
        self.client
            .post_json(&paths::slurmdb(v, "associations/"), body)
            .await
    }

    /// `GET /slurmdb/vX/qos/`.
    pub async fn qos(&self, v: ApiVersion) -> Result<Fetched<Vec<Qos>>, FetchError> {
        self.client
            .get(&paths::slurmdb(v, "qos/"), move |r| super::parse_qos(v, r))
            .await
    }

    /// `GET /slurmdb/vX/accounts/`: the account names slurmdbd knows.
    pub async fn accounts(&self, v: ApiVersion) -> Result<Fetched<BTreeSet<String>>, FetchError> {
        self.client
            .get(&paths::slurmdb(v, "accounts/"), super::parse_accounts)
            .await
    }

    /// `GET /slurmdb/vX/jobs/` for the jobs of `[from, to]` (Unix seconds,
    /// `now` the caller's clock). The path is in the result for logs.
    pub async fn slurmdb_jobs(
        &self,
        v: ApiVersion,
        window: paths::DbWindow,
    ) -> (String, Result<Fetched<Vec<DbJob>>, FetchError>) {
        let path = paths::slurmdb_jobs(v, window);
        let res = self.client.get(&path, super::slurmdb::parse_jobs).await;
        (path, res)
    }
}

/// Reads and discards a body (ping), bounded by the client's size limit.
fn drain(r: &mut dyn Read) -> Result<(), ParseError> {
    std::io::copy(r, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| ParseError::Json(serde_json::Error::io(e)))
}

/// The paths, per API version.
pub mod paths {
    use super::ApiVersion;

    /// `/slurm/vX/{endpoint}`.
    pub(crate) fn slurm(v: ApiVersion, endpoint: &str) -> String {
        format!("/slurm/{}/{}", v.as_str(), endpoint)
    }

    /// `/slurmdb/vX/{endpoint}`.
    pub(crate) fn slurmdb(v: ApiVersion, endpoint: &str) -> String {
        format!("/slurmdb/{}/{}", v.as_str(), endpoint)
    }

    /// `/slurm/vX/job/{id}`, or `/slurm/vX/job/` (for messages) without one.
    pub fn job(v: ApiVersion, id: Option<u64>) -> String {
        match id {
            Some(id) => slurm(v, &format!("job/{id}")),
            None => slurm(v, "job/"),
        }
    }

    /// A window of finished jobs: `[from, to]` asked at `now` (Unix seconds).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DbWindow {
        pub from: i64,
        pub to: i64,
        pub now: i64,
    }

    /// Path and query for the finished jobs of `[from, to]`.
    ///
    /// v0.0.42+ take epoch seconds. v0.0.38–v0.0.41 reject them (HTTP 422/500)
    /// and read times in slurmrestd's local time zone, so they get a relative
    /// window (`now-N minutes`), which is zone-free; the accountant filters records
    /// by their exact times, so a wider window is harmless.
    pub fn slurmdb_jobs(v: ApiVersion, w: DbWindow) -> String {
        let base = slurmdb(v, "jobs/");
        if v >= ApiVersion::V0042 {
            format!(
                "{base}?start_time={}&end_time={}",
                w.from,
                w.to.max(w.from) + 60
            )
        } else {
            let minutes = ((w.now - w.from).max(0) + 59) / 60 + 2;
            // No end_time: slurmdbd then reads up to its now.
            format!("{base}?start_time=now-{minutes}minutes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::paths::{self, DbWindow};
    use super::ApiVersion;

    #[test]
    fn slurmdb_paths_per_version() {
        let w = DbWindow {
            from: 1000,
            to: 2000,
            now: 2000,
        };
        assert_eq!(
            paths::slurmdb_jobs(ApiVersion::V0044, w),
            "/slurmdb/v0.0.44/jobs/?start_time=1000&end_time=2060"
        );
        assert_eq!(
            paths::slurmdb_jobs(ApiVersion::V0041, w),
            "/slurmdb/v0.0.41/jobs/?start_time=now-19minutes"
        );
    }

    #[test]
    fn job_paths() {
        assert_eq!(
            paths::job(ApiVersion::V0045, Some(42)),
            "/slurm/v0.0.45/job/42"
        );
        assert_eq!(paths::job(ApiVersion::V0038, None), "/slurm/v0.0.38/job/");
    }
}
