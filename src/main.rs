//! The `storeplane` command line. Each subcommand parses its settings and calls into the
//! library; no logic lives here.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;
use storeplane::config::{DatabaseSettings, LogSettings};
use storeplane::db::{Db, NewUser, Role};
use zeroize::Zeroizing;

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
    /// Apply pending database migrations (every command that opens the database does
    /// this first too).
    Migrate(MigrateArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(flatten)]
    db: DatabaseSettings,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account. Prints a generated password once, unless one is read from
    /// standard input with --password-stdin.
    Create(UserCreateArgs),
}

#[derive(Debug, Args)]
struct UserCreateArgs {
    #[command(flatten)]
    db: DatabaseSettings,
    /// Email address to sign in with (stored lower-cased).
    #[arg(long)]
    email: String,
    /// Make the account an admin (sees and manages every store).
    #[arg(long)]
    admin: bool,
    /// Most stores the account may have at once.
    #[arg(long, default_value_t = storeplane::db::DEFAULT_STORE_LIMIT)]
    store_limit: u32,
    /// Read the password from the first line of standard input instead of generating
    /// one.
    #[arg(long)]
    password_stdin: bool,
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
        Command::Migrate(args) => block_on(migrate(args)),
        Command::User(UserCommand::Create(args)) => block_on(user_create(args)),
    }
}

fn block_on<F: Future<Output = Result<ExitCode>>>(future: F) -> Result<ExitCode> {
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(future)
}

/// Connects to the configured database and applies pending migrations.
async fn open_database(settings: &DatabaseSettings) -> Result<(Db, Vec<String>)> {
    Ok(Db::open(&settings.url()).await?)
}

async fn migrate(args: MigrateArgs) -> Result<ExitCode> {
    let (_db, applied) = open_database(&args.db).await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user_create(args: UserCreateArgs) -> Result<ExitCode> {
    let email = storeplane::auth::normalize_email(&args.email)?;
    let (db, _) = open_database(&args.db).await?;
    let (password, generated) = if args.password_stdin {
        (read_password_from_stdin()?, false)
    } else {
        (Zeroizing::new(storeplane::auth::generate_password()), true)
    };
    let hash = storeplane::auth::hash_password(String::clone(&password)).await?;
    let role = if args.admin {
        Role::Admin
    } else {
        Role::Member
    };
    let user = db
        .create_user(NewUser {
            email: email.clone(),
            password_hash: hash,
            role,
            store_limit: Some(args.store_limit),
        })
        .await
        .with_context(|| format!("could not create the account {email}"))?;
    println!(
        "created {} account {} (id {}, store limit {})",
        user.role, user.email, user.id, user.store_limit
    );
    if generated {
        println!("password: {}", password.as_str());
        println!("This password will not be shown again: store it now.");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password_from_stdin() -> Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        eprintln!("type the password and press Enter:");
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("could not read the password from standard input")?;
    let password = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if password.is_empty() {
        bail!(
            "no password on standard input; pipe one in, or leave out --password-stdin to \
             generate one"
        );
    }
    Ok(password)
}
