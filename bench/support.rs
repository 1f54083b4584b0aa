//! What the cluster benchmarks share: their knobs, percentiles and the cluster to use.

use std::time::Duration;

/// A numeric knob from the environment, or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` percentile (0.0–1.0) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Points `KUBECONFIG` at the testenv cluster unless it is already set.
pub fn use_testenv_unless_kubeconfig() {
    if std::env::var_os("KUBECONFIG").is_none() {
        let out = std::process::Command::new("testenv/cluster")
            .arg("kubeconfig")
            .output()
            .expect("run testenv/cluster kubeconfig (start it with `testenv/cluster up`)");
        let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        // SAFETY: set before any other thread reads the environment.
        unsafe { std::env::set_var("KUBECONFIG", path) };
    }
}
