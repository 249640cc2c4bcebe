//! `report` (the month), `report job <id>` and `job-report <id>` flags, and
//! the Prometheus connection flags ([`PromConnArgs`]) they share with
//! `idle-jobs`; turned into the plain options of [`crate::report`].

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{ArgMatches, Args, FromArgMatches, Subcommand, ValueEnum};

use super::parse_duration;
use crate::report::job::{parse_job_id, parse_lookback, JobReportOptions};
use crate::report::prom::PromOptions;
use crate::report::{parse_month, parse_unit, Format, Month, ReportOptions, Unit};

/// How to reach a Prometheus-compatible query API: the same flags (and
/// environment variables) in `report`, `report job`, `job-report` and
/// `idle-jobs`.
#[derive(Debug, Clone, Args)]
pub struct PromConnArgs {
    /// Prometheus-compatible query API base URL (Prometheus, Thanos Query,
    /// Grafana Mimir with its /prometheus prefix, VictoriaMetrics). It must
    /// hold the time read: for `report` the whole month, usually long-term
    /// storage, not the scraping Prometheus.
    #[arg(long, env = "SLURM_GPU_EXPORTER_PROMETHEUS_URL")]
    pub prometheus: String,

    /// Extra HTTP header for the query API, `Name: value` (e.g. `X-Scope-OrgID: tenant1`); repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// File holding a bearer token for the query API.
    #[arg(long, env = "SLURM_GPU_EXPORTER_PROMETHEUS_BEARER_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,

    /// PEM CA bundle for an https:// query API (added to the system roots).
    #[arg(long, env = "SLURM_GPU_EXPORTER_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,

    /// Deadline for one query.
    #[arg(
        long = "prometheus-timeout",
        visible_alias = "timeout",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub prometheus_timeout: Duration,

    /// Extra label matchers for every series read, picking one scraper's
    /// series, e.g. `cluster="rig25"` or `job="slurm",cluster="rig25"`.
    #[arg(long, default_value = "")]
    pub selector: String,
}

impl PromConnArgs {
    pub fn options(&self) -> PromOptions {
        PromOptions {
            url: self.prometheus.clone(),
            headers: self.headers.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            ca_file: self.prometheus_ca_file.clone(),
            timeout: self.prometheus_timeout,
            selector: self.selector.clone(),
        }
    }
}

/// `report --month …` (the monthly usage) or `report job <id>`.
///
/// Parsed by hand, not derived: a derived optional group of the month's
/// flags counts as given when one of their environment variables is set
/// (`SLURM_GPU_EXPORTER_PROMETHEUS_URL`, `…_CLUSTER_NAME`), and then fails
/// `report job` for want of `--month`. Here the subcommand decides.
#[derive(Debug)]
pub enum ReportCommand {
    Job(JobReportArgs),
    Month(PromConnArgs, ReportArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReportJob {
    /// One job's GPU efficiency from Prometheus: per GPU mean/peak activity,
    /// peak memory, energy and idle time over the job's lifetime.
    Job(JobReportArgs),
}

impl FromArgMatches for ReportCommand {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut m.clone())
    }

    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        if m.subcommand_name().is_some() {
            let ReportJob::Job(args) = ReportJob::from_arg_matches_mut(m)?;
            return Ok(ReportCommand::Job(args));
        }
        Ok(ReportCommand::Month(
            PromConnArgs::from_arg_matches_mut(m)?,
            ReportArgs::from_arg_matches_mut(m)?,
        ))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for ReportCommand {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = ReportArgs::augment_args(PromConnArgs::augment_args(cmd));
        ReportJob::augment_subcommands(cmd)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
            // A month's queries take longer than one job's.
            .mut_arg("prometheus_timeout", |a| a.default_value("120s"))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl ReportCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ReportCommand::Job(args) => crate::report::job::run(args.options()).await,
            ReportCommand::Month(prom, month) => crate::report::run(month.options(&prom)).await,
        }
    }
}

/// The month's own flags (with [`PromConnArgs`] beside them in [`ReportCommand`]).
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Calendar month (UTC) to report, YYYY-MM.
    #[arg(long, value_parser = parse_month)]
    pub month: Month,

    /// TRES to report, comma-separated, as sreport names them: cpu, mem, gres/gpu, gres/gpu:<type>, billing.
    #[arg(short = 'T', long, default_value = "gres/gpu", value_delimiter = ',')]
    pub tres: Vec<String>,

    /// Unit of Used, as sreport's -t: Hours, Minutes, Seconds or Percent.
    #[arg(short = 't', long = "time-format", default_value = "Minutes", value_parser = parse_unit)]
    pub unit: Unit,

    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,

    /// Same as --format parsable (sreport's -P).
    #[arg(short = 'P', long)]
    pub parsable: bool,

    /// Cluster name for the Cluster column when series carry no `cluster` label.
    #[arg(long, env = "SLURM_GPU_EXPORTER_CLUSTER_NAME", default_value = "")]
    pub cluster: String,
}

impl ReportArgs {
    pub fn options(self, prom: &PromConnArgs) -> ReportOptions {
        ReportOptions {
            prom: prom.options(),
            month: self.month,
            tres: self.tres,
            unit: self.unit,
            format: self.format,
            parsable: self.parsable,
            cluster: self.cluster,
        }
    }
}

impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Table, Format::Parsable, Format::Csv, Format::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Format::Table => {
                PossibleValue::new("table").help("Aligned columns, as sreport prints without -P")
            }
            Format::Parsable => {
                PossibleValue::new("parsable").help("`|`-separated, as `sreport -P` prints")
            }
            Format::Csv => PossibleValue::new("csv"),
            Format::Json => PossibleValue::new("json"),
        })
    }
}

/// `job-report <id>` and `report job <id>`.
#[derive(Debug, Clone, Args)]
pub struct JobReportArgs {
    /// Slurm's numeric job id (an array task has its own, as `squeue -r -o %A` prints).
    #[arg(value_parser = parse_job_id)]
    pub job_id: String,

    #[command(flatten)]
    pub prom: PromConnArgs,

    /// Below this activity a GPU counts as idle (0.05 = 5 %).
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f64,

    /// How far back to look for the job.
    #[arg(long, default_value = "14d", value_parser = parse_lookback)]
    pub lookback: Duration,

    /// Resolution of the job's start and end.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub step: Duration,

    /// Longest time between two samples counted as idle time.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub max_gap: Duration,

    /// Output format: table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

impl JobReportArgs {
    pub fn options(self) -> JobReportOptions {
        JobReportOptions {
            job_id: self.job_id,
            prom: self.prom.options(),
            threshold: self.threshold,
            lookback: self.lookback,
            step: self.step,
            max_gap: self.max_gap,
            format: self.format,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(a: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(a).map(|c| c.command)
    }

    #[test]
    fn report_month_or_report_job() {
        let month = parse(&[
            "x",
            "report",
            "--prometheus",
            "http://p",
            "--month",
            "2026-11",
        ]);
        assert!(matches!(
            month,
            Ok(Command::Report(ReportCommand::Month(..)))
        ));
        let job = parse(&["x", "report", "job", "5", "--prometheus", "http://p"]);
        match job {
            Ok(Command::Report(ReportCommand::Job(a))) => assert_eq!(a.job_id, "5"),
            other => panic!("{other:?}"),
        }
        // The month report still requires its flags; job-report stays.
        assert!(parse(&["x", "report", "--prometheus", "http://p"]).is_err());
        assert!(parse(&["x", "report", "--month", "2026-11"]).is_err());
        assert!(matches!(
            parse(&["x", "job-report", "5", "--prometheus", "http://p"]),
            Ok(Command::JobReport(_))
        ));
    }

    /// The connection options of `report`, `report job`, `job-report` and
    /// `idle-jobs` given `conn` (each command's own flags added).
    fn connections(conn: &[&str]) -> [PromOptions; 4] {
        let with = |head: &[&str], tail: &[&str]| -> Command {
            let argv: Vec<&str> = head.iter().chain(conn).chain(tail).copied().collect();
            parse(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        };
        let Command::Report(ReportCommand::Month(report, m)) =
            with(&["x", "report"], &["--month", "2026-11"])
        else {
            panic!("not report")
        };
        let Command::Report(ReportCommand::Job(report_job)) =
            with(&["x", "report", "job", "7"], &[])
        else {
            panic!("not report job")
        };
        let Command::JobReport(job_report) = with(&["x", "job-report", "7"], &[]) else {
            panic!("not job-report")
        };
        let Command::IdleJobs(idle) = with(
            &["x", "idle-jobs"],
            &["--state-file", "/s", "--slurmrestd-url", "http://s"],
        ) else {
            panic!("not idle-jobs")
        };
        [
            m.options(&report).prom,
            report_job.options().prom,
            job_report.options().prom,
            idle.options().prom,
        ]
    }

    #[test]
    fn report_and_job_report_take_the_same_prometheus_connection_flags() {
        let want = PromOptions {
            url: "https://mimir/prometheus".into(),
            headers: vec!["X-Scope-OrgID: t1".into(), "X-A: b".into()],
            bearer_token_file: Some(PathBuf::from("/run/token")),
            ca_file: Some(PathBuf::from("/etc/ca.pem")),
            timeout: Duration::from_secs(7),
            selector: "cluster=\"c1\"".into(),
        };
        for timeout in ["--prometheus-timeout=7s", "--timeout=7s"] {
            let got = connections(&[
                "--prometheus",
                "https://mimir/prometheus",
                "--header",
                "X-Scope-OrgID: t1",
                "--header",
                "X-A: b",
                "--bearer-token-file",
                "/run/token",
                "--prometheus-ca-file",
                "/etc/ca.pem",
                timeout,
                "--selector",
                "cluster=\"c1\"",
            ]);
            for (i, g) in got.iter().enumerate() {
                assert_eq!(g, &want, "{timeout}, command {i}");
            }
        }
    }

    #[test]
    fn each_command_keeps_its_query_timeout_default() {
        let [report, report_job, job_report, idle] = connections(&["--prometheus", "http://p"]);
        assert_eq!(report.timeout, Duration::from_secs(120));
        for o in [report_job, job_report, idle] {
            assert_eq!(o.timeout, Duration::from_secs(60));
        }
        assert_eq!((report.headers.len(), report.selector.as_str()), (0, ""));
    }
}
