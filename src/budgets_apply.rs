//! `budgets apply`: turns the budgets file into `GrpTRESMins` limits on the
//! accounts' own associations through slurmrestd, so Slurm itself enforces
//! them (new jobs stay pending with `AssocGrpGRESMinutes`/`AssocGrpCPUMinutes`);
//! this program never kills a job.
//!
//! * Dry run by default: prints the diff against what slurmdbd holds.
//! * `--apply` POSTs only the associations whose limits change, then re-reads
//!   and verifies them. A second run finds everything unchanged.
//! * An account of the file that slurmdbd does not know refuses the whole run
//!   (non-zero exit, nothing POSTed).
//! * Only TRES named in the file are set. A `GrpTRESMins` entry for any other
//!   TRES is sent back unchanged, and accounts not in the file are not touched.
//! * Limit = budget hours × 60, rounded to the nearest minute.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::json;

use crate::cluster::budgets::Budgets;
use crate::model::{Association, LimitKind};
use crate::slurmrestd::client::{Client, ClientOptions};
use crate::slurmrestd::Api;
use crate::slurmrestd::ApiVersion;

/// What `budgets apply` does (built by the CLI layer, `crate::cli::budgets`).
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Budgets file (the cluster scraper's `--budgets` YAML).
    pub budgets: PathBuf,
    /// slurmrestd connection; the answer limit is set here.
    pub client: ClientOptions,
    /// Cluster whose associations to set; needed when slurmdbd serves several.
    pub cluster: Option<String>,
    /// Write the changes; otherwise a dry run.
    pub apply: bool,
}

/// Largest associations answer read (a site has at most some 100k associations).
const MAX_ASSOC_BYTES: u64 = 256 << 20;

/// What a row of the diff does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Set,
    Unchanged,
    Refused,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Set => "set",
            Action::Unchanged => "unchanged",
            Action::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub account: String,
    pub tres: String,
    pub now: Option<u64>,
    pub wanted: u64,
    pub action: Action,
}

/// The plan: one row per (account, TRES) of the file, and per account to
/// change the complete `GrpTRESMins` list to send.
#[derive(Debug, Default)]
pub struct Plan {
    pub rows: Vec<Row>,
    pub posts: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Plan {
    pub fn refused(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.action == Action::Refused)
            .map(|r| r.account.as_str())
            .collect();
        v.dedup();
        v
    }
}

/// Minutes of a budget given in seconds.
fn minutes(seconds: f64) -> u64 {
    // Budgets are checked finite and >= 0; the cast saturates anyway.
    (seconds / 60.0).round() as u64
}

/// `GrpTRESMins` per TRES of the account associations (user and partition
/// unset) of `cluster`, keyed by account.
fn current(assocs: &[Association], cluster: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for a in assocs
        .iter()
        .filter(|a| a.cluster == cluster && a.user.is_none() && a.partition.is_none())
    {
        let e = out.entry(a.account.clone()).or_default();
        for t in a
            .limits
            .tres
            .iter()
            .filter(|t| t.limit == LimitKind::GrpTresMins)
        {
            e.insert(t.tres.clone(), t.value);
        }
    }
    out
}

/// Compares the budgets with the associations slurmdbd holds.
pub fn plan(budgets: &Budgets, assocs: &[Association], cluster: &str) -> Plan {
    let now = current(assocs, cluster);
    let mut plan = Plan::default();
    for ((account, tres), seconds) in &budgets.seconds {
        let wanted = minutes(*seconds);
        let Some(have) = now.get(account) else {
            plan.rows.push(Row {
                account: account.clone(),
                tres: tres.clone(),
                now: None,
                wanted,
                action: Action::Refused,
            });
            continue;
        };
        let old = have.get(tres).copied();
        let action = if old == Some(wanted) {
            Action::Unchanged
        } else {
            // The whole list goes out: TRES not in the file keep their value.
            plan.posts
                .entry(account.clone())
                .or_insert_with(|| have.clone())
                .insert(tres.clone(), wanted);
            Action::Set
        };
        plan.rows.push(Row {
            account: account.clone(),
            tres: tres.clone(),
            now: old,
            wanted,
            action,
        });
    }
    plan
}

/// The POST body for one account: the `openapi_assocs_resp` schema
/// (`associations` required; `user` required in each `assoc`), with
/// `max/tres/group/minutes` = `GrpTRESMins` as a `tres_list`.
pub fn post_body(cluster: &str, account: &str, tres: &BTreeMap<String, u64>) -> serde_json::Value {
    let list: Vec<serde_json::Value> = tres
        .iter()
        .map(|(t, count)| {
            let (kind, name) = t.split_once('/').unwrap_or((t.as_str(), ""));
            json!({"type": kind, "name": name, "count": count})
        })
        .collect();
    json!({"associations": [{
        "account": account,
        "cluster": cluster,
        "user": "",
        "partition": "",
        "max": {"tres": {"group": {"minutes": list}}},
    }]})
}

pub fn render(rows: &[Row], out: &mut dyn Write) -> std::io::Result<()> {
    let show = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |v| v.to_string());
    let wa = rows
        .iter()
        .map(|r| r.account.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let wt = rows.iter().map(|r| r.tres.len()).max().unwrap_or(0).max(4);
    writeln!(
        out,
        "{:<wa$}  {:<wt$}  {:>15}  {:>14}  ACTION",
        "ACCOUNT", "TRES", "SLURM NOW (min)", "WANTED (min)"
    )?;
    for r in rows {
        let now = if r.action == Action::Refused {
            "unknown account".to_string()
        } else {
            show(r.now)
        };
        writeln!(
            out,
            "{:<wa$}  {:<wt$}  {:>15}  {:>14}  {}",
            r.account,
            r.tres,
            now,
            r.wanted,
            r.action.as_str()
        )?;
    }
    Ok(())
}

fn api(args: &ApplyOptions) -> anyhow::Result<Api> {
    let c = Client::new(ClientOptions {
        max_body_bytes: MAX_ASSOC_BYTES,
        ..args.client.clone()
    })
    .context("invalid slurmrestd settings")?;
    c.refresh_token()?;
    Ok(Api::new(std::sync::Arc::new(c)))
}

/// Finds the newest API version that serves associations and reads them.
async fn read_associations(
    api: &Api,
    version: Option<ApiVersion>,
) -> anyhow::Result<(ApiVersion, Vec<Association>)> {
    // The write shape is checked against the OpenAPI of v0.0.42-v0.0.45
    // (Slurm 25.11, 26.05) only; older APIs are not written to.
    let candidates: Vec<ApiVersion> = match version {
        Some(v) => vec![v],
        None => ApiVersion::NEWEST_FIRST
            .into_iter()
            .filter(|v| *v >= ApiVersion::V0042)
            .collect(),
    };
    for v in candidates {
        match api.associations(v).await {
            Ok(f) => return Ok((v, f.value)),
            Err(e) if e.is_not_found() && version.is_none() => continue,
            Err(e) => return Err(e).context("cannot read the associations"),
        }
    }
    bail!("slurmrestd serves no /slurmdb/vX/associations/ of v0.0.42 or later")
}

fn pick_cluster(args: &ApplyOptions, assocs: &[Association]) -> anyhow::Result<String> {
    if let Some(c) = &args.cluster {
        return Ok(c.clone());
    }
    let mut clusters: Vec<&str> = assocs.iter().map(|a| a.cluster.as_str()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    match clusters.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("slurmdbd returned no associations"),
        many => bail!(
            "slurmdbd serves several clusters ({}): name one with --cluster",
            many.join(", ")
        ),
    }
}

pub async fn run(args: ApplyOptions) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    apply(&args, &mut stdout).await
}

/// The whole command; the table goes to `out`, one log line per action.
pub async fn apply(args: &ApplyOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let budgets = Budgets::load(&args.budgets)?;
    let api = api(args)?;
    let (version, assocs) = read_associations(&api, None).await?;
    let cluster = pick_cluster(args, &assocs)?;
    let plan = plan(&budgets, &assocs, &cluster);
    render(&plan.rows, out)?;
    out.flush()?;
    let refused = plan.refused();
    if !refused.is_empty() {
        for a in &refused {
            tracing::error!(account = a, cluster = %cluster, "account unknown to slurmdbd: refused");
        }
        bail!(
            "accounts unknown to slurmdbd on cluster {cluster}: {}; nothing applied",
            refused.join(", ")
        );
    }
    if plan.posts.is_empty() {
        tracing::info!(cluster = %cluster, "all budgets already set: nothing to do");
        return Ok(());
    }
    for r in plan.rows.iter().filter(|r| r.action == Action::Set) {
        let old = r.now.map_or_else(|| "unset".to_string(), |v| v.to_string());
        tracing::info!(
            account = %r.account,
            tres = %r.tres,
            dry_run = !args.apply,
            "GrpTRESMins {old} -> {}",
            r.wanted
        );
    }
    if !args.apply {
        writeln!(
            out,
            "dry run: {} association(s) would change; run again with --apply to write them",
            plan.posts.len()
        )?;
        return Ok(());
    }
    for (account, tres) in &plan.posts {
        api.post_associations(version, &post_body(&cluster, account, tres))
            .await
            .with_context(|| format!("setting GrpTRESMins of account {account}"))?;
        tracing::info!(account = %account, cluster = %cluster, "association updated");
    }
    // Verify: what slurmdbd holds now must be what was asked.
    let (_, after) = read_associations(&api, Some(version)).await?;
    let check = self::plan(&budgets, &after, &cluster);
    let wrong: Vec<String> = check
        .rows
        .iter()
        .filter(|r| r.action != Action::Unchanged)
        .map(|r| {
            format!(
                "{} {} is {:?}, wanted {}",
                r.account, r.tres, r.now, r.wanted
            )
        })
        .collect();
    if !wrong.is_empty() {
        bail!(
            "slurmdbd accepted the update but does not hold it: {}",
            wrong.join("; ")
        );
    }
    writeln!(
        out,
        "applied: {} association(s) updated and verified",
        plan.posts.len()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Limits, TresLimit};

    fn assoc(
        cluster: &str,
        account: &str,
        user: Option<&str>,
        mins: &[(&str, u64)],
    ) -> Association {
        Association {
            cluster: cluster.into(),
            account: account.into(),
            user: user.map(str::to_string),
            partition: None,
            parent: "root".into(),
            qos: Vec::new(),
            limits: Limits {
                tres: mins
                    .iter()
                    .map(|(t, v)| TresLimit {
                        limit: LimitKind::GrpTresMins,
                        tres: t.to_string(),
                        value: *v,
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    fn budgets(yaml: &str) -> Budgets {
        Budgets::parse(std::path::Path::new("b.yaml"), yaml).unwrap()
    }

    #[test]
    fn plan_sets_only_differences_and_keeps_other_tres() {
        let b = budgets("accounts:\n  a:\n    gpu_hours: 1.51\n    cpu_hours: 2\n");
        let assocs = [
            assoc("c", "a", None, &[("cpu", 120), ("license/matlab", 5)]),
            // A user association and another cluster must not count.
            assoc("c", "a", Some("alice"), &[("gres/gpu", 91)]),
            assoc("d", "a", None, &[("gres/gpu", 91)]),
            assoc("c", "other", None, &[("gres/gpu", 1)]),
        ];
        let p = plan(&b, &assocs, "c");
        let rows: Vec<(&str, Option<u64>, u64, Action)> = p
            .rows
            .iter()
            .map(|r| (r.tres.as_str(), r.now, r.wanted, r.action))
            .collect();
        assert_eq!(
            rows,
            [
                ("cpu", Some(120), 120, Action::Unchanged),
                // 1.51 h = 90.6 min, rounded.
                ("gres/gpu", None, 91, Action::Set),
            ]
        );
        let want: BTreeMap<String, u64> = [("cpu", 120), ("gres/gpu", 91), ("license/matlab", 5)]
            .into_iter()
            .map(|(t, v)| (t.to_string(), v))
            .collect();
        assert_eq!(p.posts.len(), 1);
        assert_eq!(p.posts["a"], want);
        assert!(p.refused().is_empty());
        assert_eq!(
            post_body("c", "a", &want)["associations"][0]["max"]["tres"]["group"]["minutes"][2],
            json!({"type": "license", "name": "matlab", "count": 5})
        );
    }

    #[test]
    fn unknown_account_is_refused() {
        let b = budgets("accounts:\n  a:\n    gpu_hours: 1\n  ghost:\n    gpu_hours: 1\n");
        let p = plan(&b, &[assoc("c", "a", None, &[])], "c");
        assert_eq!(p.refused(), ["ghost"]);
    }
}
