//! A real Kubernetes API server for the integration tests, and a namespace of its own
//! for each test.
//!
//! Which cluster: `STOREPLANE_TEST_KUBECONFIG` (a kubeconfig file) if set, else
//! `KUBECONFIG` if set, else the local testenv: `testenv/cluster up` runs once per
//! test process (a no-op when it is already up; on a cold cache it builds the
//! binaries first, with its progress on the terminal) and its kubeconfig is used.
//! The cluster is left running for the next run; `testenv/cluster down` stops it.
//!
//! Never skips: when no cluster can be had, the test panics with the reason and the
//! component log files.
//!
//! Each test gets a fresh `kube::Client` (a client is bound to the tokio runtime that
//! made it, and every `#[tokio::test]` has a runtime of its own); only the resolved
//! kubeconfig is shared.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};

/// Label on every namespace a test creates (`storeplane.dev/test=true`).
pub const TEST_NAMESPACE_LABEL: &str = "storeplane.dev/test";
/// Annotation recording which test created a namespace.
pub const TEST_NAME_ANNOTATION: &str = "storeplane.dev/test-name";
/// Environment variable naming a kubeconfig file for the tests (wins over `KUBECONFIG`).
pub const TEST_KUBECONFIG_ENV: &str = "STOREPLANE_TEST_KUBECONFIG";
/// How long `TestNamespace::cleanup` waits for the namespace to disappear.
pub const NAMESPACE_DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the tests' kubeconfig comes from.
#[derive(Clone, Debug)]
enum Source {
    /// `STOREPLANE_TEST_KUBECONFIG`.
    TestKubeconfig(PathBuf),
    /// `KUBECONFIG` as kube-rs reads it (one path or several joined by `:`).
    KubeconfigEnv,
    /// The local testenv's kubeconfig, written by `testenv/cluster up`.
    Testenv(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::TestKubeconfig(p) => write!(f, "{TEST_KUBECONFIG_ENV}={}", p.display()),
            Source::KubeconfigEnv => write!(
                f,
                "KUBECONFIG={}",
                std::env::var("KUBECONFIG").unwrap_or_default()
            ),
            Source::Testenv(p) => write!(f, "the local testenv ({})", p.display()),
        }
    }
}

/// An error with its whole cause chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

static SOURCE: OnceLock<Result<Source, String>> = OnceLock::new();

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env_set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Resolves the cluster once per process; starts the local testenv when no
/// kubeconfig is given. Blocking (it may run `testenv/cluster up`).
fn source() -> Result<Source, String> {
    SOURCE
        .get_or_init(|| {
            if let Some(path) = env_set(TEST_KUBECONFIG_ENV) {
                return Ok(Source::TestKubeconfig(PathBuf::from(path)));
            }
            if env_set("KUBECONFIG").is_some() {
                return Ok(Source::KubeconfigEnv);
            }
            start_testenv().map(Source::Testenv)
        })
        .clone()
}

/// Runs `testenv/cluster up` with its output on the terminal and returns the
/// kubeconfig path it wrote.
fn start_testenv() -> Result<PathBuf, String> {
    let script = repo_root().join("testenv/cluster");
    eprintln!(
        "[it] no {TEST_KUBECONFIG_ENV} or KUBECONFIG: starting the local testenv with `{} up` \
         (a first run builds Kubernetes from source, ~20-30 minutes)",
        script.display()
    );
    let status = Command::new(&script)
        .arg("up")
        .status()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "`{} up` failed ({status}); see its output above and the component logs:\n{}",
            script.display(),
            component_logs()
        ));
    }
    let out = Command::new(&script)
        .arg("kubeconfig")
        .output()
        .map_err(|e| format!("could not run {} kubeconfig: {e}", script.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.is_file() {
        return Err(format!(
            "testenv reported up but its kubeconfig {} is missing",
            path.display()
        ));
    }
    Ok(path)
}

/// The testenv component log files, one per line, for failure messages.
fn component_logs() -> String {
    let dir = Command::new(repo_root().join("testenv/cluster"))
        .arg("logs")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]
    .iter()
    .map(|c| format!("  {dir}/{c}.log"))
    .collect::<Vec<_>>()
    .join("\n")
}

async fn config_for(source: &Source) -> Result<Config, String> {
    let options = KubeConfigOptions::default();
    match source {
        Source::TestKubeconfig(path) | Source::Testenv(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig of {source}: {}", chain(&e)))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("using kubeconfig of {source}: {}", chain(&e)))
        }
        Source::KubeconfigEnv => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("using {source}: {}", chain(&e))),
    }
}

/// [`source`], off the async threads (it may run `testenv/cluster up`); panics when
/// there is no cluster: integration tests never skip.
async fn resolved() -> Source {
    tokio::task::spawn_blocking(source)
        .await
        .expect("resolving the test cluster panicked")
        .unwrap_or_else(|e| panic!("no Kubernetes cluster for the integration tests: {e}"))
}

/// The client configuration of the test cluster (see the module docs for which
/// cluster), for tests that need to change it, e.g. to impersonate a ServiceAccount.
/// Like [`kube_client`], the first call in a process may start the local testenv.
pub async fn kube_config() -> Config {
    let source = resolved().await;
    config_for(&source)
        .await
        .unwrap_or_else(|e| panic!("no Kubernetes cluster for the integration tests: {e}"))
}

/// The `KUBECONFIG` value that points a child process (the `storeplane` binary) at the
/// test cluster. Like [`kube_client`], the first call in a process may start testenv.
pub async fn child_kubeconfig() -> std::ffi::OsString {
    let source = resolved().await;
    match source {
        Source::TestKubeconfig(path) | Source::Testenv(path) => path.into_os_string(),
        Source::KubeconfigEnv => std::env::var_os("KUBECONFIG").unwrap_or_default(),
    }
}

/// A client for the test cluster (see the module docs for which cluster). The first
/// call in a process may start the local testenv. Panics, naming the reason and the
/// component logs, when no cluster is reachable: integration tests never skip.
pub async fn kube_client() -> Client {
    let source = resolved().await;
    let config = config_for(&source)
        .await
        .unwrap_or_else(|e| panic!("no Kubernetes cluster for the integration tests: {e}"));
    let client = Client::try_from(config).expect("building a kube client");
    if let Err(e) = client.apiserver_version().await {
        let hint = match source {
            Source::Testenv(_) => format!(
                "\n`testenv/cluster status` shows which component is down; component logs:\n{}",
                component_logs()
            ),
            _ => String::new(),
        };
        panic!(
            "the test cluster, {source}, does not answer: {}{hint}",
            chain(&e)
        );
    }
    client
}

/// A namespace of the test's own: uniquely named `it-<random>`, labelled
/// `storeplane.dev/test=true` and annotated with the test's name. Call
/// [`TestNamespace::cleanup`] at the end of the test to delete it and wait until it
/// is gone; if the test panics first, `Drop` still sends the delete.
pub struct TestNamespace {
    name: String,
    client: Client,
    cleaned: bool,
}

impl TestNamespace {
    /// Creates the namespace.
    pub async fn create(client: &Client) -> TestNamespace {
        let name = unique_name("it");
        let test = std::thread::current()
            .name()
            .unwrap_or("unknown")
            .to_string();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    TEST_NAMESPACE_LABEL.to_string(),
                    "true".to_string(),
                )])),
                annotations: Some(BTreeMap::from([(TEST_NAME_ANNOTATION.to_string(), test)])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        TestNamespace {
            name,
            client: client.clone(),
            cleaned: false,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the namespace was created with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A namespaced `Api` for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace and waits (up to [`NAMESPACE_DELETE_TIMEOUT`]) until it
    /// is really gone; panics with its remaining status otherwise.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        delete_namespace_and_wait(&self.client, &self.name, NAMESPACE_DELETE_TIMEOUT).await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // The test's runtime may be shutting down, so send the delete from a thread of
        // its own with a fresh client, and wait briefly for the request to go out.
        let name = std::mem::take(&mut self.name);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(async {
                        let source = source()?;
                        let client = Client::try_from(config_for(&source).await?)
                            .map_err(|e| e.to_string())?;
                        Api::<Namespace>::all(client)
                            .delete(&name, &DeleteParams::background())
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                });
            if let Err(e) = result {
                eprintln!("[it] could not delete test namespace {name}: {e}");
            }
            let _ = done_tx.send(());
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
    }
}

/// Deletes a namespace and waits until it no longer exists (the namespace controller
/// has emptied and finalized it). Panics with the namespace's status on timeout.
pub async fn delete_namespace_and_wait(client: &Client, name: &str, timeout: Duration) {
    let api = Api::<Namespace>::all(client.clone());
    let Some(ns) = api
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("reading namespace {name}: {e}"))
    else {
        return;
    };
    let uid = ns.metadata.uid.clone().unwrap_or_default();
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return,
        Err(e) => panic!("deleting namespace {name}: {e}"),
    }
    let started = std::time::Instant::now();
    let gone = await_condition(api.clone(), name, conditions::is_deleted(&uid));
    if tokio::time::timeout(timeout, gone).await.is_ok() {
        eprintln!("[it] namespace {name} deleted in {:.1?}", started.elapsed());
    } else {
        let status = api
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|ns| ns.status)
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        panic!("namespace {name} still exists {timeout:?} after its deletion: {status}");
    }
}

/// `<prefix>-<10 random hex digits>`, unique within and across test processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{prefix}-{:010x}", h.finish() & 0xff_ffff_ffff)
}
