//! The slurmrestd connection flags, shared by `cluster` and `budgets apply`
//! (same names and environment variables in both).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::slurmrestd::client::{ClientOptions, Secret, TokenSource};

#[derive(Debug, Clone, Args)]
pub struct SlurmrestdArgs {
    /// slurmrestd URL: http://host:port, https://host:port or unix:///path/to/slurmrestd.socket.
    #[arg(long, env = "SLURMRESTD_URL")]
    pub slurmrestd_url: String,

    /// File holding the JWT (re-read every poll, so rotated Secrets apply). Without it,
    /// env SLURM_JWT is used. `budgets apply` needs an operator-level user's token
    /// (SlurmUser, root or AdminLevel=Operator).
    #[arg(long, env = "SLURMRESTD_TOKEN_FILE")]
    pub slurmrestd_token_file: Option<PathBuf>,

    /// Value of X-SLURM-USER-NAME (optional; needed for tokens not bound to a user).
    #[arg(long, env = "SLURMRESTD_USER_NAME")]
    pub slurmrestd_user_name: Option<String>,

    /// Deadline for one request: connect, headers and whole body.
    #[arg(long, env = "SLURMRESTD_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub slurmrestd_timeout: Duration,

    /// PEM CA bundle for https:// slurmrestd (added to the system roots).
    #[arg(long, env = "SLURMRESTD_CA_FILE")]
    pub slurmrestd_ca_file: Option<PathBuf>,
}

impl SlurmrestdArgs {
    /// The token: the file if given, else env SLURM_JWT, else none.
    pub fn token_source(&self) -> TokenSource {
        match &self.slurmrestd_token_file {
            Some(p) => TokenSource::File(p.clone()),
            None => match std::env::var("SLURM_JWT") {
                Ok(t) if !t.trim().is_empty() => TokenSource::Static(Secret::new(t.trim())),
                _ => TokenSource::None,
            },
        }
    }

    /// Whether neither a token file nor env SLURM_JWT is set.
    pub fn no_token_configured(&self) -> bool {
        self.slurmrestd_token_file.is_none() && std::env::var_os("SLURM_JWT").is_none()
    }

    /// Client options, answers read up to `max_body_bytes`.
    pub fn client_options(&self, max_body_bytes: u64) -> ClientOptions {
        ClientOptions {
            url: self.slurmrestd_url.clone(),
            token: self.token_source(),
            user_name: self.slurmrestd_user_name.clone(),
            timeout: self.slurmrestd_timeout,
            max_body_bytes,
            ca_file: self.slurmrestd_ca_file.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};

    const SHARED: [(&str, &str); 5] = [
        ("slurmrestd-url", "SLURMRESTD_URL"),
        ("slurmrestd-token-file", "SLURMRESTD_TOKEN_FILE"),
        ("slurmrestd-user-name", "SLURMRESTD_USER_NAME"),
        ("slurmrestd-timeout", "SLURMRESTD_TIMEOUT"),
        ("slurmrestd-ca-file", "SLURMRESTD_CA_FILE"),
    ];

    #[test]
    fn cluster_and_budgets_apply_take_the_same_connection_flags() {
        let cli = Cli::command();
        let cluster = cli.find_subcommand("cluster").unwrap();
        let apply = cli
            .find_subcommand("budgets")
            .and_then(|b| b.find_subcommand("apply"))
            .unwrap();
        for cmd in [cluster, apply] {
            for (long, env) in SHARED {
                let a = cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .unwrap_or_else(|| panic!("{} lacks --{long}", cmd.get_name()));
                assert_eq!(a.get_env(), Some(std::ffi::OsStr::new(env)), "--{long}");
            }
        }
        // Only the scraper picks an API version and a response limit.
        for long in ["slurmrestd-api-version", "slurmrestd-max-response-bytes"] {
            assert!(cluster.get_arguments().any(|a| a.get_long() == Some(long)));
            assert!(!apply.get_arguments().any(|a| a.get_long() == Some(long)));
        }
    }

    #[test]
    fn connection_flags_parse_into_client_options() {
        let cli = Cli::try_parse_from([
            "slurm-gpu-exporter",
            "budgets",
            "apply",
            "--budgets",
            "b.yaml",
            "--slurmrestd-url",
            "http://slurm:6820",
            "--slurmrestd-token-file",
            "/run/jwt",
            "--slurmrestd-timeout",
            "5s",
        ])
        .unwrap();
        let Command::Budgets(crate::cli::budgets::BudgetsCommand::Apply(a)) = cli.command else {
            panic!("not budgets apply");
        };
        let o = a.options();
        assert_eq!(o.client.url, "http://slurm:6820");
        assert_eq!(o.client.timeout, std::time::Duration::from_secs(5));
        assert!(matches!(
            o.client.token,
            crate::slurmrestd::client::TokenSource::File(ref p) if p == std::path::Path::new("/run/jwt")
        ));
        assert!(!o.apply);
    }
}
