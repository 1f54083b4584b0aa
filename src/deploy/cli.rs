//! `storeplane deploy …`: the flags, and printing what the render produced. Manifests go
//! to stdout only when the whole render succeeded; every problem goes to stderr, one per
//! line (exit 2 for bad values, 1 for a broken template).

use super::{DeployError, Env, Overrides, Values};
use crate::blueprint::cli::OutputFormat;
use clap::{Args, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `storeplane deploy`.
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Print the platform's Kubernetes manifests for an environment (pipe them to
    /// `kubectl apply --server-side -f -`), or with --generate-secrets the two Secrets of
    /// a first install.
    Render(RenderArgs),
}

/// `storeplane deploy render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Environment whose values file (deploy/values/<env>.yaml) the render starts from.
    #[arg(long, value_enum)]
    pub env: Env,
    /// A YAML file of values laid over the environment's (any subset of its keys).
    /// Repeat for more; later files win.
    #[arg(long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// A value, `key=value`, with dotted keys (replicas.api=3, tls.cluster_issuer=le);
    /// applied after --values. Repeat for more.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Print only the PostgreSQL password and credential-key Secrets, with fresh random
    /// values, for a first install. Run once: `… | kubectl create -f -`.
    #[arg(long)]
    pub generate_secrets: bool,
}

/// What `deploy render` prints on stdout.
pub fn render_output(args: &RenderArgs) -> Result<String, DeployError> {
    let overrides = Overrides {
        files: &args.values,
        sets: &args.set,
    };
    if args.generate_secrets {
        let values = Values::load(args.env, &overrides)?;
        return Ok(match args.output {
            OutputFormat::Yaml => super::generate_secrets_yaml(&values),
            OutputFormat::Json => super::generate_secrets_json(&values),
        });
    }
    let manifests = super::render_env(args.env, &overrides)?;
    Ok(match args.output {
        OutputFormat::Yaml => manifests.to_yaml(),
        OutputFormat::Json => manifests.to_json(),
    })
}

/// Runs a `deploy` command: output on stdout, problems on stderr.
pub fn run(command: &DeployCommand) -> ExitCode {
    match command {
        DeployCommand::Render(args) => match render_output(args) {
            Ok(out) => match std::io::stdout().lock().write_all(out.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: could not write the manifests to standard output: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                for p in e.problems() {
                    eprintln!("error: {p}");
                }
                ExitCode::from(e.exit_code())
            }
        },
    }
}
