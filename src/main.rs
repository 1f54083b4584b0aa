//! The `storeplane` command line. Each subcommand parses its settings and calls into the
//! library; no logic lives here.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use storeplane::blueprint::cli::{self, CommandError, OutputFormat, RenderRequest};
use storeplane::config::{
    ApiSettings, BlueprintSettings, DatabaseSettings, LogSettings, OrchestratorSettings,
    PlatformSettings, SecretSettings,
};
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
    /// Serve the REST API, its docs and the dashboard, with the orchestrator in the same
    /// process (unless --no-orchestrator). Prints the URL it listens on.
    Serve(Box<ServeArgs>),
    /// Run the orchestrator alone (production split), with /health, /ready and /metrics
    /// on a small probe listener.
    Orchestrate(Box<OrchestrateArgs>),
    /// Print the OpenAPI spec (JSON) that the API serves at /api/openapi.json.
    Openapi,
    /// Render a store's Kubernetes manifests to stdout, without a cluster or database.
    Render(Box<RenderArgs>),
    /// List and check blueprints.
    #[command(subcommand)]
    Blueprint(BlueprintCommand),
    /// Apply pending database migrations (every command that opens the database does
    /// this first too).
    Migrate(MigrateArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// The platform's own Kubernetes manifests (no Helm): render them per environment.
    #[command(subcommand)]
    Deploy(storeplane::deploy::cli::DeployCommand),
    /// List namespaces labelled as a store's that no store in the database owns (left
    /// behind by a restore from an older backup, say). Reads only: it changes neither
    /// the database (an absent or unmigrated one is refused) nor the cluster. Exit
    /// status 0: none; 3: some listed; 1: could not tell.
    Orphans(OrphansArgs),
}

#[derive(Debug, Args)]
struct OrphansArgs {
    #[command(flatten)]
    db: DatabaseSettings,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Serve only the API and dashboard; run `storeplane orchestrate` separately. The
    /// cluster is then optional (checked by /ready when KUBECONFIG is set).
    #[arg(long)]
    no_orchestrator: bool,
    #[command(flatten)]
    db: DatabaseSettings,
    #[command(flatten)]
    secrets: SecretSettings,
    #[command(flatten)]
    blueprints: BlueprintSettings,
    #[command(flatten)]
    platform: PlatformSettings,
    #[command(flatten)]
    orchestrator: OrchestratorSettings,
    #[command(flatten)]
    api: ApiSettings,
}

#[derive(Debug, Args)]
struct OrchestrateArgs {
    /// Address of the probe listener (/health, /ready, /metrics).
    #[arg(
        long,
        env = "STOREPLANE_PROBE_LISTEN",
        default_value = "127.0.0.1:9090",
        value_parser = storeplane::config::parse_listen
    )]
    listen: String,
    #[command(flatten)]
    db: DatabaseSettings,
    #[command(flatten)]
    secrets: SecretSettings,
    #[command(flatten)]
    blueprints: BlueprintSettings,
    #[command(flatten)]
    platform: PlatformSettings,
    #[command(flatten)]
    orchestrator: OrchestratorSettings,
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
    /// Change an account: its role, its store limit, or its password (a reset prints a
    /// generated password once, or reads one with --password-stdin, and signs the
    /// account out everywhere).
    Update(UserUpdateArgs),
    /// List the accounts: email, role, stores / store limit, id, created.
    List(UserListArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("role").args(["admin", "member"])))]
struct UserUpdateArgs {
    #[command(flatten)]
    db: DatabaseSettings,
    /// Email address of the account.
    #[arg(long)]
    email: String,
    /// Make the account an admin.
    #[arg(long)]
    admin: bool,
    /// Make the account a member (sees only its own stores).
    #[arg(long)]
    member: bool,
    /// Most stores the account may have at once. Stores it already has are kept when
    /// the limit goes below their number; new ones are refused until it is under it.
    #[arg(long)]
    store_limit: Option<u32>,
    /// Set a new password (generated and printed once unless --password-stdin) and
    /// revoke every token of the account.
    #[arg(long)]
    reset_password: bool,
    /// With --reset-password: read the new password from the first line of standard
    /// input (at a terminal: a prompt, with what you type not shown).
    #[arg(long, requires = "reset_password")]
    password_stdin: bool,
}

#[derive(Debug, Args)]
struct UserListArgs {
    #[command(flatten)]
    db: DatabaseSettings,
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
    /// one (at a terminal: a prompt, with what you type not shown).
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
        Command::Serve(args) => {
            let args = *args;
            block_on(async move {
                storeplane::api::run_serve(storeplane::api::ServeOptions {
                    database: args.db,
                    secrets: args.secrets,
                    blueprints: args.blueprints,
                    platform: args.platform,
                    orchestrator: args.orchestrator,
                    api: args.api,
                    run_orchestrator: !args.no_orchestrator,
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Orchestrate(args) => {
            let args = *args;
            block_on(async move {
                storeplane::api::run_orchestrate(storeplane::api::ServeOptions {
                    database: args.db,
                    secrets: args.secrets,
                    blueprints: args.blueprints,
                    platform: args.platform,
                    orchestrator: args.orchestrator,
                    api: ApiSettings {
                        listen: args.listen,
                        ..ApiSettings::default()
                    },
                    run_orchestrator: true,
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Openapi => {
            std::io::stdout().write_all(storeplane::api::spec_json().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => block_on(migrate(args)),
        Command::User(UserCommand::Create(args)) => block_on(user_create(args)),
        Command::User(UserCommand::Update(args)) => block_on(user_update(args)),
        Command::User(UserCommand::List(args)) => block_on(user_list(args)),
        Command::Deploy(command) => Ok(storeplane::deploy::cli::run(&command)),
        Command::Orphans(args) => block_on(orphans(args)),
    }
}

fn report(e: &CommandError) -> ExitCode {
    for p in e.problems() {
        eprintln!("error: {p}");
    }
    ExitCode::from(e.exit_code())
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
    let (hash, generated) = new_password(args.password_stdin).await?;
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
    show_generated(generated);
    Ok(ExitCode::SUCCESS)
}

/// A new account password, read from standard input or generated, as its argon2id
/// hash; a generated one is returned too, to be shown once the account is saved.
async fn new_password(from_stdin: bool) -> Result<(String, Option<Zeroizing<String>>)> {
    let (password, generated) = if from_stdin {
        (read_password_from_stdin()?, false)
    } else {
        (Zeroizing::new(storeplane::auth::generate_password()), true)
    };
    let hash = storeplane::auth::hash_password(String::clone(&password)).await?;
    Ok((hash, generated.then_some(password)))
}

fn show_generated(password: Option<Zeroizing<String>>) {
    if let Some(password) = password {
        println!("password: {}", password.as_str());
        println!("This password will not be shown again: store it now.");
    }
}

async fn user_update(args: UserUpdateArgs) -> Result<ExitCode> {
    let role = match (args.admin, args.member) {
        (true, _) => Some(Role::Admin),
        (_, true) => Some(Role::Member),
        _ => None,
    };
    if role.is_none() && args.store_limit.is_none() && !args.reset_password {
        bail!("nothing to change: give --admin, --member, --store-limit N or --reset-password");
    }
    let email = storeplane::auth::normalize_email(&args.email)?;
    let (db, _) = open_database(&args.db).await?;
    let Some(user) = db.user_by_email(&email).await? else {
        bail!("there is no account {email}; `storeplane user list` shows the accounts");
    };
    let (password_hash, generated) = if args.reset_password {
        let (hash, generated) = new_password(args.password_stdin).await?;
        (Some(hash), generated)
    } else {
        (None, None)
    };
    let updated = db
        .update_user(
            user.id,
            storeplane::db::UserUpdate {
                role,
                store_limit: args.store_limit,
                password_hash,
            },
        )
        .await
        .with_context(|| format!("could not update the account {email}"))?;
    let user = updated.user;
    let stores = db.count_user_stores(user.id).await?;
    println!(
        "updated {} account {} (id {}, {stores} stores, store limit {})",
        user.role, user.email, user.id, user.store_limit
    );
    if stores > u64::from(user.store_limit) {
        println!(
            "The account has more stores than its new limit: they are kept, and new ones are refused until it has fewer than {}.",
            user.store_limit
        );
    }
    if args.reset_password {
        println!(
            "password changed; {} session(s) signed out",
            updated.tokens_revoked
        );
    }
    show_generated(generated);
    Ok(ExitCode::SUCCESS)
}

async fn orphans(args: OrphansArgs) -> Result<ExitCode> {
    use storeplane::apply::{Applier, ApplySettings};
    let db = Db::open_existing(&args.db.url()).await?;
    let client = storeplane::apply::connect().await?;
    let applier = Applier::new(client, ApplySettings::default());
    let orphans = storeplane::reconcile::find_orphans(&applier, &db).await?;
    if orphans.is_empty() {
        println!("no orphaned store namespaces");
        return Ok(ExitCode::SUCCESS);
    }
    for orphan in &orphans {
        println!("{orphan}");
    }
    let stores = db.count_stores_by_status().await?;
    if stores.iter().all(|(_, n)| *n == 0) {
        eprintln!(
            "warning: this database has no stores at all — is it the platform's? Check \
             STOREPLANE_DATABASE_URL before acting on the list above"
        );
    }
    eprintln!(
        "{} orphaned store namespace(s). Storeplane deletes none of them: check each \
         (docs/deploy.md, \"Orphaned namespaces\") before removing it",
        orphans.len()
    );
    Ok(ExitCode::from(3))
}

async fn user_list(args: UserListArgs) -> Result<ExitCode> {
    let (db, _) = open_database(&args.db).await?;
    let users = db.list_users().await?;
    if users.is_empty() {
        println!(
            "no accounts yet; create one with `storeplane user create --email <address> [--admin]`"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = users
        .iter()
        .map(|(u, _)| u.email.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$}  {:<6}  {:>6}  {:<36}  CREATED",
        "EMAIL", "ROLE", "STORES", "ID"
    );
    for (user, stores) in users {
        println!(
            "{:<width$}  {:<6}  {:>6}  {:<36}  {}",
            user.email,
            user.role.as_str(),
            format!("{stores}/{}", user.store_limit),
            user.id,
            user.created_at.format("%Y-%m-%d %H:%M UTC")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password_from_stdin() -> Result<Zeroizing<String>> {
    let password = if std::io::stdin().is_terminal() {
        // Typed at a terminal: read with echo off, so the password is neither shown
        // nor left in the scrollback.
        Zeroizing::new(
            rpassword::prompt_password("password (not shown; press Enter when done): ")
                .context("could not read the password from the terminal")?,
        )
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("could not read the password from standard input")?;
        Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    if password.is_empty() {
        bail!(
            "no password on standard input; pipe one in, or leave out --password-stdin to \
             generate one"
        );
    }
    Ok(password)
}
