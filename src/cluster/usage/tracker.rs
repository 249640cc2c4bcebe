//! Glue between the poller and the pure [`Accountant`]: slurmdbd lookups,
//! the state file and budgets (their metrics: `collectors::usage`).

use std::path::PathBuf;

use super::{slurmdb, state, Accountant, AccountantOptions, UsageRow};
use crate::cluster::budgets::{BudgetError, Budgets};
use crate::slurmrestd::api::paths::DbWindow;
use crate::slurmrestd::client::FetchError;
use crate::slurmrestd::Api;
use crate::slurmrestd::ApiVersion;

/// Exporter self-metrics of the usage path that live outside the accountant.
#[derive(Debug, Clone, Default)]
pub struct UsageStatus {
    /// slurmdbd lookups by result (`ok`, `error`).
    pub lookups: std::collections::BTreeMap<&'static str, u64>,
    pub state_save_errors: u64,
}

pub struct UsageTracker {
    pub accountant: Accountant,
    pub budgets: Option<Budgets>,
    pub state_file: Option<PathBuf>,
    pub status: UsageStatus,
    /// Budget accounts were checked against slurmdbd.
    pub budgets_checked: bool,
}

/// Why the budget accounts could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Budgets(#[from] BudgetError),
    #[error("cannot list slurmdbd accounts: {0}")]
    Fetch(#[from] FetchError),
}

impl UsageTracker {
    /// Loads the state file when there is one; a missing file starts the
    /// counters from zero, an unreadable one is an error (never silently reset).
    pub fn new(
        opts: AccountantOptions,
        state_file: Option<PathBuf>,
        budgets: Option<Budgets>,
    ) -> Result<UsageTracker, state::StateError> {
        let mut accountant = match &state_file {
            Some(p) => match state::load(p, opts)? {
                Some(a) => {
                    tracing::info!(path = %p.display(), series = a.totals.len(), jobs = a.jobs.len(), accounted_until = ?a.horizon, "usage counters restored");
                    a
                }
                None => {
                    tracing::info!(path = %p.display(), "no usage state file yet: usage counters start at zero");
                    Accountant::new(opts)
                }
            },
            None => Accountant::new(opts),
        };
        accountant.prices = budgets.as_ref().and_then(|b| b.prices.clone());
        if let Some(p) = &accountant.prices {
            tracing::info!(currency = %p.currency, "prices loaded: cost counters follow usage from now on");
        }
        Ok(UsageTracker {
            accountant,
            budgets,
            state_file,
            status: UsageStatus::default(),
            budgets_checked: false,
        })
    }

    /// Finished jobs of `/jobs` are needed only if they ended after this.
    pub fn rows_since(&self) -> i64 {
        self.accountant.horizon.unwrap_or(i64::MAX)
    }

    /// Credits one poll's usage rows at `now`, asking slurmdbd first when the
    /// accountant needs it, and saves the state.
    pub async fn account(&mut self, api: &Api, v: ApiVersion, now: i64, rows: Vec<UsageRow>) {
        let db = match self.accountant.db_window(now, &rows) {
            None => None,
            Some(w) => {
                let window = DbWindow {
                    from: w.from,
                    to: w.to,
                    now,
                };
                let (path, res) = api.slurmdb_jobs(v, window).await;
                match res.map(|f| slurmdb::rows(f.value)) {
                    Ok(db_rows) => {
                        *self.status.lookups.entry("ok").or_default() += 1;
                        tracing::debug!(%path, records = db_rows.len(), "slurmdbd finished jobs fetched");
                        Some(db_rows)
                    }
                    Err(e) => {
                        *self.status.lookups.entry("error").or_default() += 1;
                        tracing::warn!(%path, error = %e, "cannot fetch finished jobs from slurmdbd; retrying next poll");
                        None
                    }
                }
            }
        };
        let rep = self.accountant.apply(now, &rows, db.as_deref());
        if rep.closed_from_db + rep.gap_jobs_from_db > 0 {
            tracing::info!(
                closed = rep.closed_from_db,
                gap_jobs = rep.gap_jobs_from_db,
                "usage completed from slurmdbd"
            );
        }
        if !rep.given_up.is_empty() {
            tracing::warn!(jobs = ?rep.given_up, "jobs left /jobs and slurmdbd never showed their end; their usage after the last poll is missing");
        }
        if let Some(p) = &self.state_file {
            if let Err(e) = state::save(p, &self.accountant, now) {
                self.status.state_save_errors += 1;
                tracing::warn!(error = %e, "usage state not saved; a restart now would lose usage since the last save");
            }
        }
    }

    /// Checks budget accounts against `/slurmdb/vX/accounts` (once).
    pub async fn check_budget_accounts(
        &mut self,
        api: &Api,
        v: ApiVersion,
    ) -> Result<(), CheckError> {
        let Some(b) = &self.budgets else {
            self.budgets_checked = true;
            return Ok(());
        };
        if self.budgets_checked {
            return Ok(());
        }
        let known = api.accounts(v).await?.value;
        self.budgets_checked = true;
        b.check_accounts(&known)?;
        tracing::info!(
            accounts = b.accounts().len(),
            "budget accounts confirmed by slurmdbd"
        );
        Ok(())
    }
}
