//! The `storeplane` command line. Each subcommand parses its settings and calls into the
//! library; no logic lives here.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use storeplane::config::LogSettings;

#[derive(Debug, Parser)]
#[command(name = "storeplane", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    log: LogSettings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

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
    match command {}
}
