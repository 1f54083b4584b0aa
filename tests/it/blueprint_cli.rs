//! `storeplane render` and `storeplane blueprint list/lint` as a person runs them: what
//! reaches stdout and stderr, and the exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn storeplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storeplane"))
        .args(args)
        .env_remove("STOREPLANE_BLUEPRINTS_DIR")
        .env_remove("STOREPLANE_BASE_DOMAIN")
        .env_remove("STOREPLANE_TLS_ISSUER")
        .env("STOREPLANE_LOG", "warn")
        .output()
        .expect("the storeplane binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a bad-input failure: exit 2, nothing on stdout, one `error:` line per problem.
#[track_caller]
fn assert_bad_input(out: &Output, expected: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "stderr: {stderr}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains(want), "`{line}` lacks `{want}`");
    }
}

fn copy_builtin(engine: &str, into: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("templates")
        .join(engine);
    let dst = into.join(engine);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

#[test]
fn render_prints_manifests_and_nothing_else() {
    let out = storeplane(&[
        "render",
        "woocommerce",
        "--name",
        "shop",
        "--set",
        "plan=medium",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert!(docs.len() >= 20, "{} documents", docs.len());
    assert!(
        docs.iter()
            .all(|d| d["metadata"]["labels"]["storeplane.dev/store-name"] == "shop")
    );
    assert!(!text(&out.stderr).contains("error"));
}

#[test]
fn json_output_is_a_list() {
    let out = storeplane(&["render", "medusa", "--name", "shop", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert!(list["items"].as_array().unwrap().len() >= 20);
}

#[test]
fn a_secrets_file_makes_output_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.yaml");
    // Only some secrets given: the rest are generated, and the render says so on stderr.
    std::fs::write(
        &file,
        "postgres_password: Xk2Yh1Lq0w9ZbB7cVn3Rt6Pm8Sd4Fg5J\n",
    )
    .unwrap();
    let args = [
        "render",
        "medusa",
        "--name",
        "shop",
        "--secrets-file",
        file.to_str().unwrap(),
    ];
    let first = storeplane(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stderr).contains("generated secrets missing from"));
    // Give them all: byte-identical output.
    let catalog = storeplane::blueprint::Catalog::builtin().unwrap();
    let secrets = catalog.get("medusa").unwrap().generate_secrets();
    std::fs::write(&file, serde_yaml::to_string(&secrets).unwrap()).unwrap();
    let (a, b) = (storeplane(&args), storeplane(&args));
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert!(text(&a.stdout).contains("kind: Secret"));
}

#[test]
fn a_secrets_file_value_outside_its_alphabet_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.yaml");
    // A newline would add a line to the redis.conf the blueprint builds from it.
    std::fs::write(
        &file,
        "redis_password: \"Xk2Yh1Lq0w9ZbB7cVn3Rt6Pm8Sd4Fg5J\\nslaveof evil 6379\"\njwt_secret: short1234\n",
    )
    .unwrap();
    let out = storeplane(&[
        "render",
        "medusa",
        "--name",
        "shop",
        "--secrets-file",
        file.to_str().unwrap(),
    ]);
    assert_bad_input(
        &out,
        &[
            "blueprint `medusa`: secret `redis_password` must be exactly 32 characters of A-Z a-z 0-9 (`alphanumeric`); the value given has characters outside that alphabet",
            "blueprint `medusa`: secret `jwt_secret` must be exactly 64 characters of A-Z a-z 0-9 (`alphanumeric`); the value given has 9 characters",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("slaveof") && !stderr.contains("short1234"),
        "{stderr}"
    );
}

/// Runs `storeplane <command>` against a fresh SQLite database; fails the test if it is
/// still running after a minute (it should refuse to start long before).
fn start_refused(command: &str, extra: &[&str], blueprints: &Path) -> Output {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        command,
        "--data-dir",
        data.path().to_str().unwrap(),
        "--blueprints-dir",
        blueprints.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_storeplane"))
        .args(&args)
        .env_remove("STOREPLANE_DATABASE_URL")
        .env_remove("STOREPLANE_SECRET_KEY_FILE")
        .env_remove("STOREPLANE_BLUEPRINTS_DIR")
        .env_remove("STOREPLANE_LISTEN")
        .env_remove("STOREPLANE_PROBE_LISTEN")
        .env("STOREPLANE_LOG", "warn")
        .env("KUBECONFIG", data.path().join("no-kubeconfig"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the storeplane binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`storeplane {command}` started with a blueprint that fails lint: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn serve_and_orchestrate_refuse_a_blueprint_that_fails_lint() {
    let dir = tempfile::tempdir().unwrap();
    let bp = copy_builtin("woocommerce", dir.path());
    let ns = bp.join("namespace.yaml.j2");
    let t = std::fs::read_to_string(&ns).unwrap();
    std::fs::write(
        &ns,
        t.replacen(
            "pod-security.kubernetes.io/enforce: {{ blueprint.pod_security }}",
            "pod-security.kubernetes.io/enforce: privileged",
            1,
        ),
    )
    .unwrap();
    for (command, extra) in [
        ("orchestrate", &["--listen", "127.0.0.1:0"][..]),
        (
            "serve",
            &["--no-orchestrator", "--listen", "127.0.0.1:0"][..],
        ),
    ] {
        let out = start_refused(command, extra, dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("error: cannot load the blueprints: blueprint `woocommerce` ("),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains("[pod-security] Namespace/store-lint-00000001: label `pod-security.kubernetes.io/enforce` is `privileged` but the blueprint declares `restricted`"),
            "{command}: {stderr}"
        );
    }
    // The authoring commands still load it: lint reports the finding, render renders.
    let dir_arg = dir.path().to_str().unwrap();
    let out = storeplane(&["blueprint", "lint", "--blueprints-dir", dir_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("woocommerce [pod-security]"));
}

#[test]
fn bad_input_exits_2_with_one_line_per_problem() {
    assert_bad_input(
        &storeplane(&["render", "joomla", "--name", "shop"]),
        &["unknown engine `joomla`; known engines: medusa, woocommerce"],
    );
    assert_bad_input(
        &storeplane(&["render", "woocommerce", "--name", "Shop_1"]),
        &["invalid store name `Shop_1`: contains 'S'"],
    );
    let long = "a".repeat(41);
    assert_bad_input(
        &storeplane(&["render", "woocommerce", "--name", &long]),
        &["is 41 characters long; the limit is 40"],
    );
    assert_bad_input(
        &storeplane(&[
            "render",
            "woocommerce",
            "--name",
            "shop",
            "--set",
            "colour=red",
        ]),
        &["parameter /colour: unknown parameter `colour`; known here: plan, domain"],
    );
    assert_bad_input(
        &storeplane(&[
            "render",
            "woocommerce",
            "--name",
            "shop",
            "--set",
            "storage.database=10",
        ]),
        &["parameter /storage/database: 10 is not of type \"string\""],
    );
    assert_bad_input(
        &storeplane(&[
            "render",
            "medusa",
            "--name",
            "a b",
            "--set",
            "plan=huge",
            "--set",
            "nope",
            "--set",
            "storage.database=1Pi",
        ]),
        &["invalid store name `a b`", "`--set nope` has no `=`"],
    );
    assert_bad_input(
        &storeplane(&[
            "render",
            "medusa",
            "--name",
            "a b",
            "--set",
            "plan=huge",
            "--set",
            "storage.database=1Pi",
        ]),
        &[
            "invalid store name `a b`",
            "parameter /plan: \"huge\" is not one of",
            "parameter /storage/database: \"1Pi\" does not match",
        ],
    );
    assert_bad_input(
        &storeplane(&[
            "render",
            "woocommerce",
            "--name",
            "shop",
            "--set",
            "storage.content=19Gi",
        ]),
        &["plan `small` is too small: requests.storage: needs 24Gi but the quota allows 20Gi"],
    );
}

#[test]
fn a_broken_blueprint_fails_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let bp = copy_builtin("woocommerce", dir.path());
    let tmpl = bp.join("mysql.yaml.j2");
    let t = std::fs::read_to_string(&tmpl).unwrap();
    std::fs::write(
        &tmpl,
        t.replacen("value: wordpress\n", "value: {{ params.db_name }}\n", 1),
    )
    .unwrap();
    let out = storeplane(&[
        "render",
        "woocommerce",
        "--name",
        "shop",
        "--blueprints-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: blueprint `woocommerce`, template `mysql.yaml.j2` line 53: undefined value"
        ),
        "{stderr}"
    );
}

#[test]
fn blueprint_list_and_lint() {
    let out = storeplane(&["blueprint", "list"]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ENGINE"), "{table}");
    assert!(
        lines[1].starts_with("medusa ") && lines[1].contains("1.0.2"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("woocommerce ") && lines[2].contains("built-in"),
        "{table}"
    );

    let out = storeplane(&["blueprint", "lint"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "lint: no findings in medusa, woocommerce\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let bp = copy_builtin("medusa", dir.path());
    let tmpl = bp.join("redis.yaml.j2");
    let t = std::fs::read_to_string(&tmpl).unwrap();
    std::fs::write(
        &tmpl,
        t.replacen(
            "      enableServiceLinks: false\n",
            "      enableServiceLinks: false\n      hostPID: true\n",
            1,
        ),
    )
    .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = storeplane(&["blueprint", "lint", "--blueprints-dir", dir_arg]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains(
            "medusa [host-access] Deployment/redis: `hostPID: true` shares the node's namespaces"
        ),
        "{report}"
    );
    assert!(
        report.ends_with("lint: 1 finding(s) in medusa, woocommerce\n"),
        "{report}"
    );
    let out = storeplane(&["blueprint", "list", "--blueprints-dir", dir_arg]);
    assert!(text(&out.stdout).contains("(overrides built-in)"));
}

#[test]
fn a_missing_blueprints_dir_is_bad_input() {
    assert_bad_input(
        &storeplane(&[
            "render",
            "woocommerce",
            "--name",
            "shop",
            "--blueprints-dir",
            "/nonexistent/blueprints",
        ]),
        &["cannot read /nonexistent/blueprints"],
    );
}
