//! Typed decoding of rendered objects: every document a template produces is matched by
//! `apiVersion`/`kind` to its `k8s-openapi` type and deserialized into it, with every
//! field the type ignores recorded (`serde_ignored`) so that an unknown field is an error
//! (k8s-openapi itself skips them silently). Also finds the line of a field in a rendered
//! YAML document, so errors can point at it.
//!
//! Pure: works on strings and `serde_json::Value`s, knows nothing of blueprints or stores.

use k8s_openapi::NamespaceResourceScope;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::any::TypeId;
use std::sync::LazyLock;

/// A kind the renderer accepts, with the functions that decode it.
pub struct KindInfo {
    pub api_version: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Namespace-scoped (true) or cluster-scoped (false).
    pub namespaced: bool,
    check: fn(&Value, &mut Vec<Vec<Seg>>) -> Result<(), serde_json::Error>,
    yaml_error: fn(&str) -> Option<serde_yaml::Error>,
}

impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version, self.kind)
    }
}

/// Deserializes `v` as `K`, collecting the path of every field `K` does not know.
fn check<K: DeserializeOwned>(
    v: &Value,
    unknown: &mut Vec<Vec<Seg>>,
) -> Result<(), serde_json::Error> {
    let _typed: K = serde_ignored::deserialize(v, |path| unknown.push(segments(&path)))?;
    Ok(())
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(Seg::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    }
}

fn yaml_error<K: DeserializeOwned>(doc: &str) -> Option<serde_yaml::Error> {
    serde_yaml::from_str::<K>(doc).err()
}

fn info<K>() -> KindInfo
where
    K: k8s_openapi::Resource + DeserializeOwned + 'static,
    K::Scope: 'static,
{
    KindInfo {
        api_version: K::API_VERSION,
        group: K::GROUP,
        version: K::VERSION,
        kind: K::KIND,
        namespaced: TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        check: check::<K>,
        yaml_error: yaml_error::<K>,
    }
}

static KINDS: LazyLock<Vec<KindInfo>> = LazyLock::new(|| {
    use k8s_openapi::api::{
        admissionregistration, apps, batch, core, networking, policy, rbac, storage,
    };
    vec![
        info::<core::v1::Namespace>(),
        info::<core::v1::ResourceQuota>(),
        info::<core::v1::LimitRange>(),
        info::<networking::v1::NetworkPolicy>(),
        info::<core::v1::ServiceAccount>(),
        info::<core::v1::Secret>(),
        info::<core::v1::ConfigMap>(),
        info::<core::v1::PersistentVolumeClaim>(),
        info::<core::v1::Service>(),
        info::<apps::v1::StatefulSet>(),
        info::<apps::v1::Deployment>(),
        info::<batch::v1::Job>(),
        info::<batch::v1::CronJob>(),
        info::<networking::v1::Ingress>(),
        info::<policy::v1::PodDisruptionBudget>(),
        info::<rbac::v1::Role>(),
        info::<rbac::v1::RoleBinding>(),
        // Cluster-scoped kinds decode, so that `blueprint lint` can name them as policy
        // violations instead of failing on an unsupported kind.
        info::<rbac::v1::ClusterRole>(),
        info::<rbac::v1::ClusterRoleBinding>(),
        info::<core::v1::PersistentVolume>(),
        info::<storage::v1::StorageClass>(),
        // The platform's own manifests confine the orchestrator with an admission policy.
        info::<admissionregistration::v1::ValidatingAdmissionPolicy>(),
        info::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
    ]
});

/// The kind registered for `api_version` + `kind`, if any.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version == api_version)
}

/// Every accepted kind, for error messages: `v1/Namespace, apps/v1/Deployment, …`.
pub fn allowed_kinds() -> String {
    KINDS
        .iter()
        .map(|k| format!("{}/{}", k.api_version, k.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One thing wrong with a decoded document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line within the document, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Decodes one parsed document (`value`, parsed from `doc`) into its typed form. Returns
/// the object, checked, with its kind, or every problem found.
pub fn decode(value: Value, doc: &str) -> Result<(Value, &'static KindInfo), Vec<Problem>> {
    let Value::Object(map) = &value else {
        return Err(vec![Problem {
            line: Some(1),
            message: "the document is not a mapping; every document must be one Kubernetes object"
                .into(),
        }]);
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Err(vec![Problem {
            line: Some(1),
            message: "the object has no string `apiVersion` and `kind`".into(),
        }]);
    };
    let Some(info) = lookup(api_version, kind) else {
        let hint = KINDS
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| format!(" (did you mean apiVersion `{}`?)", k.api_version))
            .unwrap_or_default();
        return Err(vec![Problem {
            line: locate(doc, &[Seg::Key("kind".into())]),
            message: format!(
                "kind `{kind}` with apiVersion `{api_version}` is not supported{hint}; allowed kinds: {}",
                allowed_kinds()
            ),
        }]);
    };
    let mut unknown = Vec::new();
    if let Err(json_err) = (info.check)(&value, &mut unknown) {
        // Decode the YAML text again for an error that carries the field path and line.
        let problem = match (info.yaml_error)(doc) {
            Some(e) => Problem {
                line: e.location().map(|l| l.line()),
                message: format!("{kind}: {}", strip_location(&e.to_string())),
            },
            None => Problem {
                line: None,
                message: format!("{kind}: {json_err}"),
            },
        };
        return Err(vec![problem]);
    }
    // A null is dropped by the typed form but would reach the API server: say so.
    let mut nulls = Vec::new();
    find_nulls(&value, &mut Vec::new(), &mut nulls);
    if unknown.is_empty() && nulls.is_empty() {
        return Ok((value, info));
    }
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        .map(|path| Problem {
            line: locate(doc, &path),
            message: format!(
                "{kind}: unknown field {} (not in {}/{}); check its spelling and nesting",
                pointer(&path),
                info.api_version,
                info.kind
            ),
        })
        .collect();
    problems.extend(nulls.into_iter().map(|path| Problem {
        line: locate(doc, &path),
        message: format!(
            "{kind}: field {} is null; remove it or give it a value",
            pointer(&path)
        ),
    }));
    Err(problems)
}

fn find_nulls(v: &Value, path: &mut Vec<Seg>, found: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Null => found.push(path.clone()),
        Value::Object(m) => {
            for (k, v) in m {
                if matches!(v, Value::Object(_) | Value::Array(_) | Value::Null) {
                    path.push(Seg::Key(k.clone()));
                    find_nulls(v, path, found);
                    path.pop();
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if matches!(v, Value::Object(_) | Value::Array(_) | Value::Null) {
                    path.push(Seg::Index(i));
                    find_nulls(v, path, found);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// A step in a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// JSON pointer for a path, e.g. `/spec/template/spec/containers/0/imagePullPolice`.
pub fn pointer(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        match seg {
            Seg::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Seg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// Best-effort 1-based line of `path` in a block-style YAML document; falls back to the
/// deepest ancestor found. Flow-style (`{…}`) values are not looked into.
pub fn locate(doc: &str, path: &[Seg]) -> Option<usize> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut start = 0usize;
    // Column of the enclosing block's key (or `-` of the enclosing item); children are
    // indented further.
    let mut parent_col: isize = -1;
    let mut found = None;
    for seg in path {
        let mut hit = None;
        match seg {
            Seg::Key(key) => {
                for (i, line) in lines.iter().enumerate().skip(start) {
                    let Some((col, content)) = content_of(line) else {
                        continue;
                    };
                    // A sequence item's first key sits after `- `.
                    let (col, content) = strip_dash(col, content);
                    if (col as isize) <= parent_col && i > start {
                        break;
                    }
                    if (col as isize) > parent_col && key_matches(content, key) {
                        hit = Some((i, col));
                        break;
                    }
                }
                if let Some((i, col)) = hit {
                    found = Some(i + 1);
                    start = i + 1;
                    parent_col = col as isize;
                }
            }
            Seg::Index(n) => {
                let mut count = 0usize;
                let mut dash_col = None;
                for (i, line) in lines.iter().enumerate().skip(start) {
                    let Some((col, content)) = content_of(line) else {
                        continue;
                    };
                    if (col as isize) <= parent_col && !content.starts_with('-') {
                        break;
                    }
                    if content.starts_with("- ") || content == "-" {
                        match dash_col {
                            None => dash_col = Some(col),
                            Some(c) if c != col => continue,
                            Some(_) => {}
                        }
                        if count == *n {
                            hit = Some((i, col));
                            break;
                        }
                        count += 1;
                    }
                }
                if let Some((i, col)) = hit {
                    found = Some(i + 1);
                    // The item's first key is on the dash line itself.
                    start = i;
                    parent_col = col as isize;
                }
            }
        }
        if hit.is_none() {
            break;
        }
    }
    found
}

fn content_of(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    Some((line.len() - trimmed.len(), trimmed))
}

fn strip_dash(col: usize, content: &str) -> (usize, &str) {
    let mut col = col;
    let mut content = content;
    while let Some(rest) = content.strip_prefix("- ") {
        let rest_trimmed = rest.trim_start_matches(' ');
        col += 2 + (rest.len() - rest_trimmed.len());
        content = rest_trimmed;
    }
    (col, content)
}

fn key_matches(content: &str, key: &str) -> bool {
    let bare = content
        .strip_prefix(key)
        .is_some_and(|rest| rest.starts_with(':'));
    let quoted = content
        .strip_prefix('"')
        .and_then(|c| c.strip_prefix(key))
        .is_some_and(|rest| rest.starts_with("\":"));
    bare || quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(doc: &str) -> Value {
        serde_yaml::from_str(doc).unwrap()
    }

    const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: a
          image: x
        - name: b
          image: y
          imagePullPolice: Always
";

    #[test]
    fn unknown_fields_are_found_with_their_line() {
        let errs = decode(parse(DEPLOYMENT), DEPLOYMENT).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, Some(17));
        assert!(
            errs[0]
                .message
                .contains("unknown field /spec/template/spec/containers/1/imagePullPolice"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn wrong_types_name_the_field_and_line() {
        let doc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: \"eighty\"\n";
        let errs = decode(parse(doc), doc).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, Some(7), "{errs:?}");
        assert!(
            errs[0].message.contains("spec.ports[0].port"),
            "{}",
            errs[0].message
        );
        assert!(
            errs[0].message.contains("invalid type"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn unsupported_kinds_list_the_allowed_ones() {
        let doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";
        let errs = decode(parse(doc), doc).unwrap_err();
        assert!(errs[0].message.contains("`Pod`"));
        assert!(errs[0].message.contains("apps/v1/Deployment"));
        let doc = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: p\n";
        let errs = decode(parse(doc), doc).unwrap_err();
        assert!(
            errs[0]
                .message
                .contains("did you mean apiVersion `networking.k8s.io/v1`")
        );
    }

    #[test]
    fn valid_objects_round_trip() {
        let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n";
        let (v, info) = decode(parse(doc), doc).unwrap();
        assert_eq!(info.kind, "ConfigMap");
        assert!(info.namespaced);
        assert_eq!(v["data"]["a"], "b");
        assert!(!lookup("v1", "Namespace").unwrap().namespaced);
    }

    #[test]
    fn nulls_are_reported() {
        let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n";
        let errs = decode(parse(doc), doc).unwrap_err();
        assert!(
            errs[0].message.contains("/metadata/annotations is null"),
            "{errs:?}"
        );
        assert_eq!(errs[0].line, Some(5));
    }

    #[test]
    fn locate_walks_nested_blocks() {
        let path = [
            Seg::Key("spec".into()),
            Seg::Key("template".into()),
            Seg::Key("spec".into()),
            Seg::Key("containers".into()),
            Seg::Index(1),
            Seg::Key("image".into()),
        ];
        assert_eq!(locate(DEPLOYMENT, &path), Some(16));
        assert_eq!(locate(DEPLOYMENT, &[Seg::Key("nope".into())]), None);
    }
}
