//! The orchestrator's RBAC, in one place: exactly the verbs and resources `src/apply`
//! uses, derived from [`PRUNABLE_KINDS`] and [`needs_wait`] so that a kind added there
//! (or a new readiness rule) cannot be forgotten here. `deploy/templates/10-rbac.yaml.j2`
//! renders the ClusterRole from [`orchestrator_rules`]; tests check the rendered role
//! equals it and that provisioning a store under it works (tests/it/deploy.rs).
//!
//! Where each verb comes from (src/apply):
//! - namespaces: `get` (the inventory reads the namespace, teardown names its
//!   blockers), `list`+`watch` (readiness of the namespace phase, waiting for teardown;
//!   `list` also for the orphan audit),
//!   `create`+`patch` (server-side apply: a PATCH, which the API server also authorizes
//!   as `create` when the object does not exist yet), `delete` (teardown).
//! - every prunable kind, in any namespace: `list` (inventory), `create`+`patch` (apply),
//!   `delete` (pruning, replacing a changed Job) except for the kinds pruning keeps
//!   ([`KEPT_ON_PRUNE`]: claims, which only the namespace's deletion removes); plus
//!   `watch` for kinds with a readiness rule (`watch_object` lists and watches by
//!   name). No `get`: nothing reads them by name.
//! - pods and events: `list`+`watch` (to explain why a phase is not ready); pods also
//!   `delete` (a StatefulSet's pod of an earlier revision that is not ready holds the
//!   rollout back for good under `OrderedReady`: the wait deletes it, see
//!   `apply::wait::replace_blockers`).
//! - storageclasses: `get` (a claim still pending is ready when its class binds on
//!   first consumer).
//! - API discovery (`/api`, `/apis/<group>/<version>`): granted to every authenticated
//!   user by the built-in `system:discovery` binding; nothing here.
//!
//! Pure: builds values, no IO.

use crate::apply::{KEPT_ON_PRUNE, PRUNABLE_KINDS, needs_wait};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{ApiResource, GroupVersionKind};

/// Verbs on store namespaces.
pub const NAMESPACE_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// Verbs on every kind of [`PRUNABLE_KINDS`], in every namespace.
pub const STORE_OBJECT_VERBS: &[&str] = &["list", "create", "patch", "delete"];

/// Added to [`STORE_OBJECT_VERBS`] for kinds that have a readiness rule
/// ([`needs_wait`]): waiting watches them.
pub const WAIT_VERBS: &[&str] = &["watch"];

/// Read-only resources read to judge or explain a phase that is not ready:
/// `(API group, resource, verbs)`.
pub const OBSERVED: &[(&str, &str, &[&str])] = &[
    ("", "pods", &["list", "watch", "delete"]),
    ("", "events", &["list", "watch"]),
    ("storage.k8s.io", "storageclasses", &["get"]),
];

/// The order verbs are written in, for stable output.
const VERB_ORDER: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// The resource (plural) of a kind, as RBAC names it.
pub fn resource_of(group: &str, version: &str, kind: &str) -> String {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)).plural
}

fn sorted(verbs: impl IntoIterator<Item = &'static str>) -> Vec<String> {
    let mut v: Vec<&str> = verbs.into_iter().collect();
    v.sort_by_key(|verb| VERB_ORDER.iter().position(|o| o == verb));
    v.dedup();
    v.into_iter().map(str::to_owned).collect()
}

fn rule(group: &str, resources: Vec<String>, verbs: Vec<String>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources),
        verbs,
        ..Default::default()
    }
}

/// The orchestrator's ClusterRole rules: namespaces, then the store kinds grouped by API
/// group and verb set (in [`PRUNABLE_KINDS`] order), then [`OBSERVED`]. No wildcards.
pub fn orchestrator_rules() -> Vec<PolicyRule> {
    let mut rules = vec![rule(
        "",
        vec!["namespaces".into()],
        sorted(NAMESPACE_VERBS.iter().copied()),
    )];
    // (group, verbs) → resources, in first-seen order.
    let mut buckets: Vec<(&str, Vec<String>, Vec<String>)> = Vec::new();
    for (group, version, kind) in PRUNABLE_KINDS {
        let extra: &[&str] = if needs_wait(kind) { WAIT_VERBS } else { &[] };
        let kept = KEPT_ON_PRUNE.contains(kind);
        let verbs = sorted(
            STORE_OBJECT_VERBS
                .iter()
                .chain(extra)
                .copied()
                .filter(|v| !(kept && *v == "delete")),
        );
        let resource = resource_of(group, version, kind);
        match buckets
            .iter_mut()
            .find(|(g, v, _)| g == group && *v == verbs)
        {
            Some((_, _, resources)) => resources.push(resource),
            None => buckets.push((group, verbs, vec![resource])),
        }
    }
    rules.extend(
        buckets
            .into_iter()
            .map(|(group, verbs, resources)| rule(group, resources, verbs)),
    );
    for (group, resource, verbs) in OBSERVED {
        rules.push(rule(
            group,
            vec![(*resource).to_owned()],
            sorted(verbs.iter().copied()),
        ));
    }
    rules
}

/// Every `(API group, resource, verb)` the rules grant, one per line of a check.
pub fn grants(rules: &[PolicyRule]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.push((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::Resource;
    use k8s_openapi::api::{apps, batch, core, networking, policy};

    #[test]
    fn no_wildcards_and_no_rule_without_resources() {
        let rules = orchestrator_rules();
        for r in &rules {
            let all = r
                .api_groups
                .iter()
                .flatten()
                .chain(r.resources.iter().flatten())
                .chain(&r.verbs);
            for s in all {
                assert!(!s.contains('*'), "wildcard in {r:?}");
            }
            assert!(r.non_resource_urls.is_none() && r.resource_names.is_none());
            assert!(!r.resources.as_ref().unwrap().is_empty() && !r.verbs.is_empty());
        }
    }

    #[test]
    fn every_prunable_kind_is_covered_with_its_real_plural() {
        let real = |kind: &str| -> &'static str {
            match kind {
                "ConfigMap" => core::v1::ConfigMap::URL_PATH_SEGMENT,
                "Secret" => core::v1::Secret::URL_PATH_SEGMENT,
                "Service" => core::v1::Service::URL_PATH_SEGMENT,
                "ServiceAccount" => core::v1::ServiceAccount::URL_PATH_SEGMENT,
                "PersistentVolumeClaim" => core::v1::PersistentVolumeClaim::URL_PATH_SEGMENT,
                "ResourceQuota" => core::v1::ResourceQuota::URL_PATH_SEGMENT,
                "LimitRange" => core::v1::LimitRange::URL_PATH_SEGMENT,
                "Deployment" => apps::v1::Deployment::URL_PATH_SEGMENT,
                "StatefulSet" => apps::v1::StatefulSet::URL_PATH_SEGMENT,
                "Job" => batch::v1::Job::URL_PATH_SEGMENT,
                "CronJob" => batch::v1::CronJob::URL_PATH_SEGMENT,
                "Ingress" => networking::v1::Ingress::URL_PATH_SEGMENT,
                "NetworkPolicy" => networking::v1::NetworkPolicy::URL_PATH_SEGMENT,
                "PodDisruptionBudget" => policy::v1::PodDisruptionBudget::URL_PATH_SEGMENT,
                other => panic!("add {other} to this table to check its plural"),
            }
        };
        let granted = grants(&orchestrator_rules());
        for (group, version, kind) in PRUNABLE_KINDS {
            let plural = resource_of(group, version, kind);
            assert_eq!(plural, real(kind), "{kind}");
            for verb in STORE_OBJECT_VERBS {
                let kept = KEPT_ON_PRUNE.contains(kind) && *verb == "delete";
                assert_eq!(
                    granted.contains(&((*group).into(), plural.clone(), (*verb).into())),
                    !kept,
                    "{kind} {verb}"
                );
            }
            let watch = granted.contains(&((*group).into(), plural.clone(), "watch".into()));
            assert_eq!(watch, needs_wait(kind), "{kind}: watch only when awaited");
            let get = granted.contains(&((*group).into(), plural.clone(), "get".into()));
            assert!(!get, "{kind}: nothing reads it by name");
        }
    }

    #[test]
    fn the_exact_rules() {
        let text: Vec<String> = orchestrator_rules()
            .iter()
            .map(|r| {
                format!(
                    "{:?} {} [{}]",
                    r.api_groups.as_ref().unwrap()[0],
                    r.resources.as_ref().unwrap().join(","),
                    r.verbs.join(",")
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                r#""" namespaces [get,list,watch,create,patch,delete]"#,
                r#""" configmaps,secrets,services,serviceaccounts,limitranges [list,create,patch,delete]"#,
                r#""" persistentvolumeclaims [list,watch,create,patch]"#,
                r#""" resourcequotas [list,watch,create,patch,delete]"#,
                r#""apps" deployments,statefulsets [list,watch,create,patch,delete]"#,
                r#""batch" jobs [list,watch,create,patch,delete]"#,
                r#""batch" cronjobs [list,create,patch,delete]"#,
                r#""networking.k8s.io" ingresses,networkpolicies [list,create,patch,delete]"#,
                r#""policy" poddisruptionbudgets [list,create,patch,delete]"#,
                r#""" pods [list,watch,delete]"#,
                r#""" events [list,watch]"#,
                r#""storage.k8s.io" storageclasses [get]"#,
            ]
        );
    }
}
