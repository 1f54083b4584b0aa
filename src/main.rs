//! The `storeplane` command line. Each subcommand parses its settings and calls into the
//! library; no logic lives here.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use storeplane::blueprint::cli::{self, CommandError, OutputFormat, RenderRequest};
use storeplane::config::{BlueprintSettings, LogSettings, PlatformSettings};

#[derive(Debug, Parser)]
#[command(name = "storeplane", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    log: LogSettings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render a store's Kubernetes manifests to stdout, without a cluster or database.
    Render(Box<RenderArgs>),
    /// List and check blueprints.
    #[command(subcommand)]
    Blueprint(BlueprintCommand),
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// Engine to render (a blueprint name, e.g. woocommerce or medusa).
    engine: String,
    /// Store name: lowercase letters, digits and '-', starting with a letter.
    #[arg(long)]
    name: String,
    /// Store id. Defaults to an id derived from the name, so output is reproducible.
    #[arg(long)]
    id: Option<uuid::Uuid>,
    /// A parameter, `key=value`; dotted keys nest (storage.database=20Gi); values are
    /// read as YAML scalars. Repeat for more.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
    /// YAML mapping of secret name to value (a store's own credentials). Secrets it lacks
    /// are generated. Without it, every secret is generated fresh.
    #[arg(long)]
    secrets_file: Option<PathBuf>,
    #[command(flatten)]
    blueprints: BlueprintSettings,
    #[command(flatten)]
    platform: PlatformSettings,
}

#[derive(Debug, Subcommand)]
enum BlueprintCommand {
    /// List the available blueprints: engine, version, source and description.
    List(BlueprintArgs),
    /// Render every blueprint with its defaults (and each plan) and check policy. Exits 1
    /// when there are findings.
    Lint(BlueprintArgs),
}

#[derive(Debug, Args)]
struct BlueprintArgs {
    #[command(flatten)]
    blueprints: BlueprintSettings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = storeplane::telemetry::init(&cli.log) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", storeplane::telemetry::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Render(args) => {
            let req = RenderRequest {
                engine: &args.engine,
                name: &args.name,
                id: args.id,
                sets: &args.set,
                format: args.output,
                secrets_file: args.secrets_file.as_deref(),
                blueprints: &args.blueprints,
                platform: &args.platform,
            };
            match cli::render(&req) {
                Ok(out) => {
                    for note in &out.notes {
                        eprintln!("note: {note}");
                    }
                    std::io::stdout().write_all(out.manifests.as_bytes())?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(report(&e)),
            }
        }
        Command::Blueprint(BlueprintCommand::List(args)) => {
            match cli::load_catalog(&args.blueprints) {
                Ok(catalog) => {
                    print!("{}", cli::list_table(&catalog));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(report(&e)),
            }
        }
        Command::Blueprint(BlueprintCommand::Lint(args)) => {
            match cli::load_catalog(&args.blueprints) {
                Ok(catalog) => {
                    let findings = storeplane::blueprint::lint(&catalog);
                    print!("{}", cli::lint_report(&catalog, &findings));
                    Ok(if findings.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                Err(e) => Ok(report(&e)),
            }
        }
    }
}

fn report(e: &CommandError) -> ExitCode {
    for p in e.problems() {
        eprintln!("error: {p}");
    }
    ExitCode::from(e.exit_code())
}
