//! Resource arithmetic over rendered objects: Kubernetes quantities (`500m`, `1Gi`), the
//! worst-case footprint of a store's workloads (replicas, rolling-update surge, Jobs,
//! init containers) and of its volumes, and the comparison with the store's
//! ResourceQuota. Used by the renderer (storage must fit the plan) and by lint (every
//! plan's quota must hold the blueprint's own pods).
//!
//! Pure functions over `serde_json::Value`s in the shape k8s-openapi serializes.

use serde_json::Value;

/// Parses a Kubernetes quantity into its base unit (cores, bytes, count).
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let base: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let v = base * factor;
    v.is_finite().then_some(v)
}

/// Formats a byte count for messages (`1.5Gi`, `512Mi`).
pub fn format_bytes(b: f64) -> String {
    let gi = 1024.0f64.powi(3);
    let mi = 1024.0f64.powi(2);
    if b >= gi {
        format!("{}Gi", trim(b / gi))
    } else {
        format!("{}Mi", trim(b / mi))
    }
}

/// Formats cores for messages (`1.5`, `250m`).
pub fn format_cpu(c: f64) -> String {
    if c < 1.0 {
        format!("{}m", trim(c * 1000.0))
    } else {
        trim(c)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Compute and storage a set of objects needs at most at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Footprint {
    pub requests_cpu: f64,
    pub requests_memory: f64,
    pub limits_cpu: f64,
    pub limits_memory: f64,
    pub pods: f64,
    pub storage: f64,
    pub pvcs: f64,
    /// Containers without a request or limit, as `Kind/name container`.
    pub unbounded: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Pod {
    req_cpu: f64,
    req_mem: f64,
    lim_cpu: f64,
    lim_mem: f64,
}

/// The worst-case footprint of `objects` (each `(kind, object as JSON)`): every Deployment
/// at replicas + surge, StatefulSets at replicas, every Job and CronJob running at once,
/// every PVC bound.
pub fn footprint<'a>(objects: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Footprint {
    let mut f = Footprint::default();
    for (kind, obj) in objects {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let (copies, pod_spec) = match kind {
            "Deployment" => {
                let replicas = int_at(obj, "/spec/replicas").unwrap_or(1.0);
                (
                    replicas + deployment_surge(obj, replicas),
                    obj.pointer("/spec/template/spec"),
                )
            }
            "StatefulSet" => {
                let replicas = int_at(obj, "/spec/replicas").unwrap_or(1.0);
                if let Some(vcts) = obj
                    .pointer("/spec/volumeClaimTemplates")
                    .and_then(Value::as_array)
                {
                    for vct in vcts {
                        f.pvcs += replicas;
                        f.storage += replicas * pvc_storage(vct);
                    }
                }
                (replicas, obj.pointer("/spec/template/spec"))
            }
            "Job" => (
                int_at(obj, "/spec/parallelism").unwrap_or(1.0),
                obj.pointer("/spec/template/spec"),
            ),
            "CronJob" => {
                let parallel = int_at(obj, "/spec/jobTemplate/spec/parallelism").unwrap_or(1.0);
                let policy = obj
                    .pointer("/spec/concurrencyPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("Allow");
                // Forbid: one run at a time. Replace/Allow: a new run may start before the
                // previous one's pods are gone.
                let runs = if policy == "Forbid" { 1.0 } else { 2.0 };
                (
                    parallel * runs,
                    obj.pointer("/spec/jobTemplate/spec/template/spec"),
                )
            }
            "PersistentVolumeClaim" => {
                f.pvcs += 1.0;
                f.storage += pvc_storage(obj);
                continue;
            }
            _ => continue,
        };
        let Some(spec) = pod_spec else { continue };
        // A generic ephemeral volume is a claim per pod, counted by the quota like any.
        for vct in
            containers(spec, "volumes").filter_map(|v| v.pointer("/ephemeral/volumeClaimTemplate"))
        {
            f.pvcs += copies;
            f.storage += copies * pvc_storage(vct);
        }
        let pod = pod_resources(spec, &format!("{kind}/{name}"), &mut f.unbounded);
        f.pods += copies;
        f.requests_cpu += copies * pod.req_cpu;
        f.requests_memory += copies * pod.req_mem;
        f.limits_cpu += copies * pod.lim_cpu;
        f.limits_memory += copies * pod.lim_mem;
    }
    f
}

fn int_at(obj: &Value, ptr: &str) -> Option<f64> {
    obj.pointer(ptr).and_then(Value::as_f64)
}

fn deployment_surge(obj: &Value, replicas: f64) -> f64 {
    let strategy = obj.pointer("/spec/strategy");
    let kind = strategy
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    if kind == "Recreate" {
        return 0.0;
    }
    match strategy.and_then(|s| s.pointer("/rollingUpdate/maxSurge")) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(1.0),
        Some(Value::String(p)) => percent_of(p, replicas).unwrap_or(1.0),
        // Default maxSurge is 25%, rounded up.
        _ => (replicas * 0.25).ceil(),
    }
}

fn percent_of(p: &str, replicas: f64) -> Option<f64> {
    let pct: f64 = p.strip_suffix('%')?.parse().ok()?;
    Some((replicas * pct / 100.0).ceil())
}

fn pvc_storage(pvc: &Value) -> f64 {
    pvc.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(parse_quantity)
        .unwrap_or(0.0)
}

fn pod_resources(spec: &Value, owner: &str, unbounded: &mut Vec<String>) -> Pod {
    let mut sum = Pod::default();
    for c in containers(spec, "containers") {
        let p = container_resources(c, owner, unbounded);
        sum.req_cpu += p.req_cpu;
        sum.req_mem += p.req_mem;
        sum.lim_cpu += p.lim_cpu;
        sum.lim_mem += p.lim_mem;
    }
    // Init containers run one at a time before the others, each beside the sidecars
    // (init containers with `restartPolicy: Always`) started before it; sidecars then
    // run beside the containers for the pod's life. The pod needs the largest of these.
    let mut sidecars = Pod::default();
    let mut most = Pod::default();
    for c in containers(spec, "initContainers") {
        let p = container_resources(c, owner, unbounded);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars = sidecars.plus(p);
            most = most.max(sidecars);
        } else {
            most = most.max(sidecars.plus(p));
        }
    }
    most.max(sum.plus(sidecars))
}

impl Pod {
    fn plus(self, o: Pod) -> Pod {
        Pod {
            req_cpu: self.req_cpu + o.req_cpu,
            req_mem: self.req_mem + o.req_mem,
            lim_cpu: self.lim_cpu + o.lim_cpu,
            lim_mem: self.lim_mem + o.lim_mem,
        }
    }

    /// Resource by resource, the larger.
    fn max(self, o: Pod) -> Pod {
        Pod {
            req_cpu: self.req_cpu.max(o.req_cpu),
            req_mem: self.req_mem.max(o.req_mem),
            lim_cpu: self.lim_cpu.max(o.lim_cpu),
            lim_mem: self.lim_mem.max(o.lim_mem),
        }
    }
}

/// The containers (or init containers) of a pod spec.
pub fn containers<'a>(spec: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn container_resources(c: &Value, owner: &str, unbounded: &mut Vec<String>) -> Pod {
    let q = |ptr: &str| {
        c.pointer(ptr)
            .and_then(Value::as_str)
            .and_then(parse_quantity)
    };
    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
    let lim_cpu = q("/resources/limits/cpu");
    let lim_mem = q("/resources/limits/memory");
    let req_cpu = q("/resources/requests/cpu").or(lim_cpu);
    let req_mem = q("/resources/requests/memory").or(lim_mem);
    if lim_cpu.is_none() || lim_mem.is_none() {
        unbounded.push(format!("{owner} container {name}"));
    }
    Pod {
        req_cpu: req_cpu.unwrap_or(0.0),
        req_mem: req_mem.unwrap_or(0.0),
        lim_cpu: lim_cpu.unwrap_or(0.0),
        lim_mem: lim_mem.unwrap_or(0.0),
    }
}

type Check = (&'static str, f64, Option<f64>, fn(f64) -> String);

/// One way a footprint exceeds a quota: `(quota key, needed, allowed)` in words.
pub fn exceeded(f: &Footprint, quota_hard: &Value, storage_only: bool) -> Vec<String> {
    let hard = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            quota_hard
                .get(*k)
                .and_then(Value::as_str)
                .and_then(parse_quantity)
        })
    };
    let mut checks: Vec<Check> = vec![
        (
            "requests.storage",
            f.storage,
            hard(&["requests.storage"]),
            format_bytes,
        ),
        (
            "persistentvolumeclaims",
            f.pvcs,
            hard(&["persistentvolumeclaims"]),
            |v| trim(v),
        ),
    ];
    if !storage_only {
        checks.extend([
            (
                "requests.cpu",
                f.requests_cpu,
                hard(&["requests.cpu", "cpu"]),
                format_cpu as fn(f64) -> String,
            ),
            (
                "requests.memory",
                f.requests_memory,
                hard(&["requests.memory", "memory"]),
                format_bytes,
            ),
            (
                "limits.cpu",
                f.limits_cpu,
                hard(&["limits.cpu"]),
                format_cpu,
            ),
            (
                "limits.memory",
                f.limits_memory,
                hard(&["limits.memory"]),
                format_bytes,
            ),
            ("pods", f.pods, hard(&["pods"]), |v| trim(v)),
        ]);
    }
    let mut out = Vec::new();
    for (key, need, allowed, fmt) in checks {
        match allowed {
            Some(max) if need > max * (1.0 + 1e-9) => out.push(format!(
                "{key}: needs {} but the quota allows {}",
                fmt(need),
                fmt(max)
            )),
            None if !storage_only => {
                out.push(format!("{key}: the ResourceQuota sets no limit for it"))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1.5Gi"), Some(1610612736.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("12Qi"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(format_bytes(1610612736.0), "1.5Gi");
        assert_eq!(format_cpu(0.25), "250m");
    }

    #[test]
    fn footprint_counts_surge_jobs_and_init_containers() {
        let res = |cpu: &str, mem: &str| json!({"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu, "memory": mem}});
        let dep = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {
                "initContainers": [{"name": "i", "resources": res("2", "1Gi")}],
                "containers": [{"name": "a", "resources": res("500m", "256Mi")},
                               {"name": "b", "resources": res("250m", "256Mi")}]}}}});
        let job = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {
            "containers": [{"name": "c", "resources": res("100m", "128Mi")}]}}}});
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        let f = footprint([
            ("Deployment", &dep),
            ("Job", &job),
            ("PersistentVolumeClaim", &pvc),
        ]);
        // 3 pods of max(2, 0.75) cpu, max(1Gi, 512Mi) memory, plus the Job.
        assert!((f.limits_cpu - 6.1).abs() < 1e-9, "{f:?}");
        assert_eq!(f.limits_memory, 3.0 * 1073741824.0 + 134217728.0);
        assert_eq!(f.pods, 4.0);
        assert_eq!(f.pvcs, 1.0);
        let quota = json!({"requests.cpu": "10", "requests.memory": "10Gi", "limits.cpu": "6",
            "limits.memory": "10Gi", "requests.storage": "4Gi", "persistentvolumeclaims": "1", "pods": "4"});
        let over = exceeded(&f, &quota, false);
        assert_eq!(over.len(), 2, "{over:?}");
        assert!(over[0].starts_with("requests.storage: needs 5Gi but the quota allows 4Gi"));
        assert!(over[1].starts_with("limits.cpu: needs 6.1 but the quota allows 6"));
        assert_eq!(exceeded(&f, &quota, true).len(), 1);
    }

    #[test]
    fn ephemeral_volumes_are_claims_of_every_pod() {
        let dep = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
            "strategy": {"type": "Recreate"},
            "template": {"spec": {
                "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                    "spec": {"resources": {"requests": {"storage": "1Gi"}}}}}},
                    {"name": "tmp", "emptyDir": {}}],
                "containers": []}}}});
        let f = footprint([("Deployment", &dep)]);
        assert_eq!(f.pvcs, 2.0);
        assert_eq!(f.storage, 2.0 * 1073741824.0);
    }

    #[test]
    fn sidecars_run_beside_the_containers_and_the_later_init_containers() {
        let res = |cpu: &str| json!({"requests": {"cpu": cpu, "memory": "1Mi"}, "limits": {"cpu": cpu, "memory": "1Mi"}});
        let pod = |init: Value| {
            json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {
                "initContainers": init,
                "containers": [{"name": "app", "resources": res("500m")}]}}}})
        };
        let cpu = |p: &Value| footprint([("StatefulSet", p)]).limits_cpu;
        // A sidecar adds to the containers: 0.5 + 0.5.
        let p =
            pod(json!([{"name": "proxy", "restartPolicy": "Always", "resources": res("500m")}]));
        assert!((cpu(&p) - 1.0).abs() < 1e-9, "{}", cpu(&p));
        // An init container after the sidecar runs beside it: 0.25 + 2.
        let p = pod(json!([
            {"name": "proxy", "restartPolicy": "Always", "resources": res("250m")},
            {"name": "setup", "resources": res("2")}]));
        assert!((cpu(&p) - 2.25).abs() < 1e-9, "{}", cpu(&p));
        // One before it runs alone: max(2, 0.25 + 0.5).
        let p = pod(json!([
            {"name": "setup", "resources": res("2")},
            {"name": "proxy", "restartPolicy": "Always", "resources": res("250m")}]));
        assert!((cpu(&p) - 2.0).abs() < 1e-9, "{}", cpu(&p));
    }
}
