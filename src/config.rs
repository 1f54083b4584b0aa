//! Settings: one typed, validated struct per concern, read from command-line flags and
//! `STOREPLANE_*` environment variables (flags win). Every command takes the groups it
//! needs; `main.rs` flattens them into its subcommands.
//!
//! This module parses and validates; it must not open connections or files beyond
//! resolving paths.

use clap::{Args, ValueEnum};
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Logging.
#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// Log filter in `tracing` syntax, e.g. `info` or `storeplane=debug,kube=info`.
    #[arg(
        long = "log",
        env = "STOREPLANE_LOG",
        default_value = "info",
        global = true
    )]
    pub filter: String,
    /// Log line format.
    #[arg(
        long = "log-format",
        env = "STOREPLANE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where blueprints come from.
#[derive(Debug, Clone, Default, Args)]
pub struct BlueprintSettings {
    /// A folder of extra blueprints (one sub-folder per engine). They are added to the
    /// built-in ones; a folder with a built-in engine's name overrides it.
    #[arg(long, env = "STOREPLANE_BLUEPRINTS_DIR")]
    pub blueprints_dir: Option<PathBuf>,
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// Database URL: `sqlite://path/to/file.db` or `postgres://user:pass@host/db`.
    /// Defaults to a SQLite file in the data directory.
    #[arg(long, env = "STOREPLANE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for local state: the default SQLite database and the generated
    /// credential-encryption key. Created on first start.
    #[arg(long, env = "STOREPLANE_DATA_DIR", default_value = ".storeplane")]
    pub data_dir: PathBuf,
}

impl DatabaseSettings {
    /// The URL to connect to: the configured one, or the default SQLite file.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("storeplane.db").display()
            ),
        }
    }
}

/// Where credentials of stores are encrypted at rest.
#[derive(Debug, Clone, Args)]
pub struct SecretSettings {
    /// File holding the 32-byte key (hex) that encrypts store credentials in the
    /// database. Generated on first start when missing. Every replica must share it.
    #[arg(long, env = "STOREPLANE_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
}

impl SecretSettings {
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.secret_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("secret.key"))
    }
}

/// Platform-wide values every store's render receives as `platform.*`.
#[derive(Debug, Clone, Args)]
pub struct PlatformSettings {
    /// Base domain for store hosts: a store without its own `domain` parameter is served
    /// at `<name>.<base domain>`.
    #[arg(
        long,
        env = "STOREPLANE_BASE_DOMAIN",
        default_value = "stores.localtest.me",
        value_parser = parse_dns_name
    )]
    pub base_domain: String,
    /// IngressClass for store Ingresses.
    #[arg(long, env = "STOREPLANE_INGRESS_CLASS", default_value = "nginx", value_parser = parse_dns_name)]
    pub ingress_class: String,
    /// Namespace the ingress controller runs in (allowed through store NetworkPolicies).
    #[arg(
        long,
        env = "STOREPLANE_INGRESS_NAMESPACE",
        default_value = "ingress-nginx",
        value_parser = parse_dns_label
    )]
    pub ingress_namespace: String,
    /// Labels of the ingress controller's pods: store NetworkPolicies admit only the
    /// pods of the ingress namespace that carry all of them (`key=value`, comma-separated),
    /// or `any` for every pod of that namespace. The default fits ingress-nginx; k3s'
    /// Traefik (in `kube-system`) is `app.kubernetes.io/name=traefik`.
    #[arg(
        long,
        env = "STOREPLANE_INGRESS_POD_LABELS",
        default_value = DEFAULT_INGRESS_POD_LABELS
    )]
    pub ingress_pod_labels: PodLabels,
    /// cert-manager ClusterIssuer for store TLS; no TLS when unset.
    #[arg(long, env = "STOREPLANE_TLS_ISSUER", value_parser = parse_dns_name_or_empty)]
    pub tls_issuer: Option<String>,
    /// StorageClass for store volumes; the cluster default when unset.
    #[arg(long, env = "STOREPLANE_STORAGE_CLASS", value_parser = parse_dns_name_or_empty)]
    pub storage_class: Option<String>,
    /// Hosts no store may be served at, besides the base domain itself: the platform's
    /// own host, for one. Repeat the flag, or separate them with commas in the env.
    #[arg(
        long = "reserved-host",
        env = "STOREPLANE_RESERVED_HOSTS",
        value_delimiter = ',',
        value_parser = parse_dns_name_or_empty
    )]
    pub reserved_hosts: Vec<String>,
}

impl PlatformSettings {
    /// Whether `host` is kept from stores: the base domain or a reserved host.
    pub fn is_reserved_host(&self, host: &str) -> bool {
        host.eq_ignore_ascii_case(&self.base_domain)
            || self
                .reserved_hosts
                .iter()
                .any(|r| r.trim().eq_ignore_ascii_case(host))
    }
}

impl Default for PlatformSettings {
    fn default() -> Self {
        PlatformSettings {
            base_domain: "stores.localtest.me".into(),
            ingress_class: "nginx".into(),
            ingress_namespace: "ingress-nginx".into(),
            ingress_pod_labels: DEFAULT_INGRESS_POD_LABELS
                .parse()
                .expect("the default pod labels parse"),
            tls_issuer: None,
            storage_class: None,
            reserved_hosts: Vec::new(),
        }
    }
}

/// A login token's lifetime: from a minute (long enough to use it) to 365 days (a
/// bearer credential that outlives a year is a password nobody rotates).
pub fn parse_token_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(60) {
        return Err(format!("`{s}` is shorter than a minute; e.g. 12h"));
    }
    if d > Duration::from_secs(365 * 86_400) {
        return Err(format!(
            "`{s}` is longer than 365 days; tokens must expire within a year (sign in again to get a new one)"
        ));
    }
    Ok(d)
}

/// The labels ingress-nginx's own manifests and chart give its controller pods.
const DEFAULT_INGRESS_POD_LABELS: &str =
    "app.kubernetes.io/component=controller,app.kubernetes.io/name=ingress-nginx";

/// A pod selector's labels, written `key=value,key=value`; `any` (no labels) selects
/// every pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLabels(pub std::collections::BTreeMap<String, String>);

impl fmt::Display for PodLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("any");
        }
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(","))
    }
}

impl FromStr for PodLabels {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use crate::blueprint::{is_label_key, is_label_value};
        let hint = "write `key=value[,key=value…]`, e.g. `app.kubernetes.io/name=traefik`, \
                    or `any` for every pod of the namespace";
        let mut labels = std::collections::BTreeMap::new();
        if s.trim() == "any" {
            return Ok(PodLabels(labels));
        }
        for pair in s.split(',').map(str::trim) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` has no `=`; {hint}"))?;
            let (k, v) = (k.trim(), v.trim());
            if !is_label_key(k) {
                return Err(format!(
                    "`{k}` is not a label key: `[dns.prefix/]name`, the name at most 63 \
                     letters, digits, '-', '_' and '.', starting and ending with a letter \
                     or digit; {hint}"
                ));
            }
            if !is_label_value(v) {
                return Err(format!(
                    "`{v}` (of `{k}`) is not a label value: at most 63 letters, digits, \
                     '-', '_' and '.', starting and ending with a letter or digit; {hint}"
                ));
            }
            if labels.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(format!("`{k}` is given twice; {hint}"));
            }
        }
        Ok(PodLabels(labels))
    }
}

/// The orchestrator.
#[derive(Debug, Clone, Args)]
pub struct OrchestratorSettings {
    /// Name of this replica in leases, events and logs, before a random suffix that
    /// keeps two replicas given one name apart. Defaults to `<hostname>-<pid>`.
    #[arg(long, env = "STOREPLANE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Stores worked on at once by this replica.
    #[arg(long, env = "STOREPLANE_WORKERS", default_value_t = 8, value_parser = parse_concurrency)]
    pub workers: usize,
    /// Objects of one phase applied at once.
    #[arg(long, env = "STOREPLANE_APPLY_CONCURRENCY", default_value_t = 8, value_parser = parse_concurrency)]
    pub apply_concurrency: usize,
    /// How long a claimed store stays leased without renewal.
    #[arg(long, env = "STOREPLANE_LEASE_DURATION", default_value = "30s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Safety-net sweep for work missed by wake-ups.
    #[arg(long, env = "STOREPLANE_SWEEP_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// How often ready stores are re-applied to repair drift.
    #[arg(long, env = "STOREPLANE_RESYNC_PERIOD", default_value = "5m", value_parser = parse_duration)]
    pub resync_period: Duration,
    /// Longest wait for one phase's objects to become ready.
    #[arg(long, env = "STOREPLANE_PHASE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub phase_timeout: Duration,
    /// Longest a store may take from request to ready before it is marked failed.
    #[arg(long, env = "STOREPLANE_PROVISION_DEADLINE", default_value = "15m", value_parser = parse_duration)]
    pub provision_deadline: Duration,
}

impl OrchestratorSettings {
    /// This replica's name in leases and event actors: a readable prefix (the
    /// configured `--instance-id`, else `<hostname>-<pid>`) and a random suffix,
    /// `<prefix>-<8 hex digits>` (a lease adds `#<token>` of the claim that wrote it). Lease checks compare owners, so two replicas with
    /// one name would pass each other's: the same id configured twice, or containers
    /// that share a hostname and all run as PID 1. The suffix is drawn on every call:
    /// call this once per orchestrator and keep the result (`Orchestrator::instance`).
    pub fn instance_id(&self) -> String {
        let prefix = self
            .instance_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME")
                    .ok()
                    .or_else(|| {
                        std::fs::read_to_string("/etc/hostname")
                            .ok()
                            .map(|s| s.trim().to_owned())
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "storeplane".into());
                format!("{host}-{}", std::process::id())
            });
        format!("{prefix}-{:08x}", rand::random::<u32>())
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.workers == 0 {
            return Err(SettingsError::invalid("--workers", "must be at least 1"));
        }
        if self.apply_concurrency == 0 {
            return Err(SettingsError::invalid(
                "--apply-concurrency",
                "must be at least 1",
            ));
        }
        if self.lease_duration < Duration::from_secs(2) {
            return Err(SettingsError::invalid(
                "--lease-duration",
                "must be at least 2s so a lease can be renewed before it expires",
            ));
        }
        // Durations are added to timestamps and instants; past a year they are no
        // setting anyone means, and far past it they overflow.
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        for (flag, value, least) in [
            ("--lease-duration", self.lease_duration, Duration::ZERO),
            (
                "--sweep-interval",
                self.sweep_interval,
                Duration::from_millis(100),
            ),
            (
                "--resync-period",
                self.resync_period,
                Duration::from_secs(1),
            ),
            (
                "--phase-timeout",
                self.phase_timeout,
                Duration::from_secs(1),
            ),
            (
                "--provision-deadline",
                self.provision_deadline,
                Duration::from_secs(1),
            ),
        ] {
            if value < least {
                return Err(SettingsError::invalid(
                    flag,
                    format!("must be at least {}", humantime::format_duration(least)),
                ));
            }
            if value > YEAR {
                return Err(SettingsError::invalid(flag, "must be at most 365 days"));
            }
        }
        Ok(())
    }
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        OrchestratorSettings {
            instance_id: None,
            workers: 8,
            apply_concurrency: 8,
            lease_duration: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            resync_period: Duration::from_secs(300),
            phase_timeout: Duration::from_secs(300),
            provision_deadline: Duration::from_secs(900),
        }
    }
}

/// A DNS name (a domain, a host, an IngressClass, a ClusterIssuer, a StorageClass):
/// checked at start-up, not when the first store's objects are refused.
fn parse_dns_name(s: &str) -> Result<String, String> {
    if crate::blueprint::is_dns1123_subdomain(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a DNS name: lowercase letters, digits, '-' and '.', e.g. stores.example.com (no scheme, no port)"
        ))
    }
}

/// [`parse_dns_name`], or empty: an env value set to "" (or a trailing comma) means
/// none, as it always has.
fn parse_dns_name_or_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Ok(String::new())
    } else {
        parse_dns_name(s)
    }
}

/// A namespace name.
fn parse_dns_label(s: &str) -> Result<String, String> {
    if crate::blueprint::is_dns1123_label(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a namespace name: at most 63 lowercase letters, digits and '-'"
        ))
    }
}

/// A browser origin, `scheme://host[:port]`, as browsers send it in `Origin` (a
/// trailing `/` is dropped); empty entries (a trailing comma) are ignored.
fn parse_origin(s: &str) -> Result<String, String> {
    let trimmed = s.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let hint = "write an origin as scheme://host[:port], e.g. https://app.example.com";
    let url =
        url::Url::parse(trimmed).map_err(|e| format!("`{s}` is not an origin ({e}); {hint}"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !trimmed.ends_with('?')
        && !trimmed.ends_with('#');
    if plain {
        Ok(trimmed.to_owned())
    } else {
        Err(format!("`{s}` is not an origin; {hint}"))
    }
}

/// A whole number within `range`: `what` names it, `why` explains the range.
fn parse_within(
    s: &str,
    range: std::ops::RangeInclusive<usize>,
    what: &str,
    why: &str,
) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not {what}"))?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is outside {}..={}{why}",
            range.start(),
            range.end()
        ))
    }
}

/// A request body limit: at least 1 KiB (a sign-in or a store's creation fits), at
/// most 16 MiB (bodies are read whole into memory).
fn parse_body_limit(s: &str) -> Result<usize, String> {
    parse_within(
        s,
        1024..=16 << 20,
        "a number of bytes, e.g. 65536",
        ": below 1 KiB not even a sign-in fits",
    )
}

/// A built dashboard: a folder holding `index.html` (a mistyped one would otherwise
/// serve the "not built" page to whoever opens `/`).
fn parse_dashboard_dir(s: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(s);
    if dir.join("index.html").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "{} holds no index.html: build the dashboard (scripts/dashboard build) and point this at its dist/ folder",
            dir.display()
        ))
    }
}

/// Workers or objects at once: 1 to 1024.
fn parse_concurrency(s: &str) -> Result<usize, String> {
    parse_within(s, 1..=1024, "a whole number", "")
}

/// A listen address is `host:port` (`127.0.0.1:8080`, `[::]:80`, `localhost:0`),
/// checked before anything starts.
pub fn parse_listen(s: &str) -> Result<String, String> {
    let port = s
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty())
        .map(|(_, port)| port);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(s.to_owned()),
        _ => Err(format!(
            "`{s}` is not `host:port`; e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::]:8080"
        )),
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Args)]
pub struct ApiSettings {
    /// Address to listen on: `host:port` (port 0 picks a free one).
    #[arg(long, env = "STOREPLANE_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: String,
    /// Serve `/metrics` (with `/health` and `/ready`) on this address instead of the API
    /// listener, so that a public Ingress in front of the API never exposes it.
    #[arg(long, env = "STOREPLANE_METRICS_LISTEN", value_parser = parse_listen)]
    pub metrics_listen: Option<String>,
    /// Origins allowed to call the API from a browser (comma-separated). Same-origin
    /// requests from the bundled dashboard need no entry.
    #[arg(long, env = "STOREPLANE_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
    /// Requests per client IP: `<count>/<period>`, e.g. `100/15m`.
    #[arg(long, env = "STOREPLANE_RATE_LIMIT", default_value = "100/15m")]
    pub rate_limit: RateSpec,
    /// Store creations per client IP: `<count>/<period>`.
    #[arg(long, env = "STOREPLANE_CREATE_RATE_LIMIT", default_value = "10/15m")]
    pub create_rate_limit: RateSpec,
    /// Login attempts per client IP: `<count>/<period>`.
    #[arg(long, env = "STOREPLANE_LOGIN_RATE_LIMIT", default_value = "10/15m")]
    pub login_rate_limit: RateSpec,
    /// Failed logins per account, from all addresses together: `<count>/<period>`. Once
    /// used up, every sign-in to the account is refused until it refills. Well above
    /// the per-IP limit, so that no single address can keep an owner locked out.
    #[arg(
        long,
        env = "STOREPLANE_LOGIN_ACCOUNT_RATE_LIMIT",
        default_value = "100/15m"
    )]
    pub login_account_rate_limit: RateSpec,
    /// Event streams (`GET /api/stores/{id}/events/stream`) one account may have open
    /// at once.
    #[arg(long, env = "STOREPLANE_MAX_STREAMS_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_user: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "STOREPLANE_MAX_BODY_BYTES", default_value_t = 64 * 1024, value_parser = parse_body_limit)]
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed: addresses or CIDRs, comma-separated
    /// (e.g. the ingress controller's pod network, `10.42.0.0/16`). A request from one
    /// of them is keyed by the header, read from the right past every trusted proxy to
    /// the first address that is none; from any other peer the header is ignored.
    #[arg(
        long,
        env = "STOREPLANE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Send `Strict-Transport-Security` (set when served over TLS).
    #[arg(long, env = "STOREPLANE_HSTS", default_value_t = false)]
    pub hsts: bool,
    /// Lifetime of tokens issued by login.
    #[arg(long, env = "STOREPLANE_TOKEN_TTL", default_value = "12h", value_parser = parse_token_ttl)]
    pub token_ttl: Duration,
    /// Serve the dashboard from this folder instead of the copy built into the binary.
    #[arg(long, env = "STOREPLANE_DASHBOARD_DIR", value_parser = parse_dashboard_dir)]
    pub dashboard_dir: Option<PathBuf>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: None,
            cors_origins: Vec::new(),
            rate_limit: "100/15m".parse().expect("valid default"),
            create_rate_limit: "10/15m".parse().expect("valid default"),
            login_rate_limit: "10/15m".parse().expect("valid default"),
            login_account_rate_limit: "100/15m".parse().expect("valid default"),
            max_body_bytes: 64 * 1024,
            max_streams_per_user: 20,
            trusted_proxies: Vec::new(),
            hsts: false,
            token_ttl: Duration::from_secs(12 * 3600),
            dashboard_dir: None,
        }
    }
}

/// A rate: at most `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

impl FromStr for RateSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "write it as <count>/<period>, e.g. 100/15m or 5/1s";
        let (count, period) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` has no `/`; {hint}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` is not a whole number; {hint}"))?;
        let count = NonZeroU32::new(count)
            .ok_or_else(|| format!("the count must be at least 1; {hint}"))?;
        let period = parse_duration(period.trim())?;
        if period.is_zero() {
            return Err(format!("the period must be longer than zero; {hint}"));
        }
        Ok(RateSpec { count, period })
    }
}

/// Parses `30s`, `5m`, `1h30m`, `250ms`.
/// A network (`10.0.0.0/8`, `fd00::/8`) or a single address (`192.0.2.1`).
pub fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not an address or a network in CIDR notation (e.g. 10.0.0.0/8)")
        })
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 5m or 1h"))
}

/// A setting that cannot work, named by its flag.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid setting {flag}: {reason}")]
pub struct SettingsError {
    pub flag: &'static str,
    pub reason: String,
}

impl SettingsError {
    pub fn invalid(flag: &'static str, reason: impl Into<String>) -> Self {
        SettingsError {
            flag,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_and_api_values_are_checked_at_start_up() {
        assert_eq!(
            parse_dns_name("stores.example.com").as_deref(),
            Ok("stores.example.com")
        );
        for bad in [
            "https://stores.example.com",
            "Stores.Example.com",
            "stores.example.com:443",
            "",
        ] {
            assert!(
                parse_dns_name(bad)
                    .unwrap_err()
                    .contains("is not a DNS name"),
                "{bad}"
            );
        }
        assert_eq!(parse_dns_name_or_empty("").as_deref(), Ok(""));
        assert!(parse_dns_name_or_empty("Bad_Issuer").is_err());
        assert!(parse_dns_label("ingress-nginx").is_ok());
        assert!(parse_dns_label("kube.system").is_err());
        assert_eq!(
            parse_origin(" https://app.example.com/ ").as_deref(),
            Ok("https://app.example.com")
        );
        assert_eq!(
            parse_origin("http://localhost:5173").as_deref(),
            Ok("http://localhost:5173")
        );
        assert_eq!(parse_origin("").as_deref(), Ok(""));
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x.example",
            "https://u:p@x.example",
        ] {
            assert!(
                parse_origin(bad)
                    .unwrap_err()
                    .contains("scheme://host[:port]"),
                "{bad}"
            );
        }
        assert_eq!(parse_body_limit("65536"), Ok(65536));
        assert!(parse_body_limit("0").unwrap_err().contains("1024"));
        assert!(parse_body_limit("lots").is_err());
        assert_eq!(parse_concurrency("8"), Ok(8));
        assert!(parse_concurrency("0").is_err() && parse_concurrency("100000000").is_err());
        // Through clap, as an operator meets them: the flag's name and the reason.
        let err = <ServeArgsForTest as clap::Parser>::try_parse_from([
            "x",
            "--base-domain",
            "https://stores.example.com",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--base-domain") && err.contains("is not a DNS name"),
            "{err}"
        );
    }

    #[derive(Debug, clap::Parser)]
    struct ServeArgsForTest {
        #[command(flatten)]
        _platform: PlatformSettings,
        #[command(flatten)]
        _api: ApiSettings,
    }

    #[test]
    fn rate_specs() {
        let r: RateSpec = "100/15m".parse().unwrap();
        assert_eq!(r.count.get(), 100);
        assert_eq!(r.period, Duration::from_secs(900));
        assert!(
            "0/1m"
                .parse::<RateSpec>()
                .unwrap_err()
                .contains("at least 1")
        );
        assert!("10".parse::<RateSpec>().unwrap_err().contains("no `/`"));
        assert!("x/1m".parse::<RateSpec>().is_err());
        assert!(
            "1/forever"
                .parse::<RateSpec>()
                .unwrap_err()
                .contains("duration")
        );
    }

    #[test]
    fn token_lifetimes_are_a_minute_to_a_year() {
        assert_eq!(parse_token_ttl("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(
            parse_token_ttl("365d"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        assert!(
            parse_token_ttl("30s")
                .unwrap_err()
                .contains("shorter than a minute")
        );
        assert!(
            parse_token_ttl("10000y")
                .unwrap_err()
                .contains("within a year")
        );
        assert!(parse_token_ttl("soon").is_err());
    }

    #[test]
    fn pod_labels_are_label_pairs_or_any() {
        let l: PodLabels = " app.kubernetes.io/name=traefik , tier=edge"
            .parse()
            .unwrap();
        assert_eq!(l.0.len(), 2);
        assert_eq!(l.0["app.kubernetes.io/name"], "traefik");
        assert_eq!(l.to_string(), "app.kubernetes.io/name=traefik,tier=edge");
        assert_eq!(l.to_string().parse::<PodLabels>().unwrap(), l);
        let any: PodLabels = "any".parse().unwrap();
        assert!(any.0.is_empty());
        assert_eq!(any.to_string(), "any");
        assert_eq!(
            PlatformSettings::default().ingress_pod_labels.to_string(),
            DEFAULT_INGRESS_POD_LABELS
        );
        for (bad, says) in [
            ("traefik", "has no `=`"),
            ("", "has no `=`"),
            ("a=b,", "has no `=`"),
            ("-a=b", "not a label key"),
            ("Example.com/a=b", "not a label key"),
            ("a=b c", "not a label value"),
            ("a=-b", "not a label value"),
            ("a: b=c", "not a label key"),
            ("a=1,a=2", "given twice"),
        ] {
            let err = bad.parse::<PodLabels>().unwrap_err();
            assert!(err.contains(says) && err.contains("`any`"), "{bad}: {err}");
        }
    }

    #[test]
    fn listen_addresses_are_host_and_port() {
        for ok in ["127.0.0.1:8080", "0.0.0.0:0", "[::]:80", "localhost:8080"] {
            assert_eq!(parse_listen(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "nonsense",
            "8080",
            ":8080",
            "127.0.0.1:",
            "127.0.0.1:http",
            "1.2.3.4:70000",
        ] {
            let err = parse_listen(bad).unwrap_err();
            assert!(
                err.contains("host:port") && err.contains(bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let db = DatabaseSettings {
            database_url: None,
            data_dir: PathBuf::from("/var/lib/storeplane"),
        };
        assert_eq!(
            db.url(),
            "sqlite:///var/lib/storeplane/storeplane.db?mode=rwc"
        );
    }

    #[test]
    fn instance_ids_keep_their_prefix_and_are_unique() {
        let fixed = OrchestratorSettings {
            instance_id: Some("orchestrator-0".into()),
            ..Default::default()
        };
        let ids: std::collections::BTreeSet<String> =
            (0..64).map(|_| fixed.instance_id()).collect();
        assert_eq!(ids.len(), 64, "two replicas configured alike share a name");
        for id in &ids {
            let suffix = id
                .strip_prefix("orchestrator-0-")
                .unwrap_or_else(|| panic!("{id}: the configured prefix is kept"));
            assert!(
                suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
        }
        let default = OrchestratorSettings::default();
        let (a, b) = (default.instance_id(), default.instance_id());
        assert_ne!(a, b, "the same hostname and pid still give two names");
        assert!(
            a.contains(&format!("-{}-", std::process::id())),
            "{a}: hostname and pid kept"
        );
    }

    #[test]
    fn orchestrator_validation() {
        let mut o = OrchestratorSettings::default();
        assert!(o.validate().is_ok());
        o.workers = 0;
        assert!(o.validate().unwrap_err().to_string().contains("--workers"));
        // A zero sweep interval would panic the orchestrator's timer; a huge resync
        // period would overflow the time it is added to.
        let o = OrchestratorSettings {
            sweep_interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .contains("--sweep-interval")
        );
        let o = OrchestratorSettings {
            resync_period: Duration::from_secs(u64::MAX / 2),
            ..Default::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(
            e.contains("--resync-period") && e.contains("365 days"),
            "{e}"
        );
    }
}
