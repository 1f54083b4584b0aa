//! Loading blueprints: the `blueprint.yaml` manifest format, the built-in blueprints
//! embedded from `templates/` at build time, and folders given with `--blueprints-dir`
//! that add engines or replace built-in ones. A loaded [`Blueprint`] has its templates
//! compiled and its parameter schema compiled, so rendering does no parsing of either.
//!
//! Reads files (embedded or from the blueprints folder) and nothing else; no network, no
//! database.

use super::engine;
use super::lint::{LintFinding, blocks_provisioning, lint_blueprint};
use super::params::{self, ParamErrors};
use super::secrets::{MAX_SECRET_LENGTH, MIN_SECRET_LENGTH, SecretSpec, StoreSecrets};
use crate::config::BlueprintSettings;
use crate::domain::Phase;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The file every blueprint folder holds.
pub const MANIFEST_FILE: &str = "blueprint.yaml";
/// Suffix of the templates a blueprint renders.
pub const TEMPLATE_SUFFIX: &str = ".yaml.j2";

#[derive(rust_embed::RustEmbed)]
#[folder = "templates/"]
struct BuiltinFiles;

/// Why blueprints could not be loaded or an engine not found.
#[derive(Debug, thiserror::Error)]
pub enum BlueprintError {
    #[error("unknown engine `{engine}`; known engines: {}", .known.join(", "))]
    UnknownEngine { engine: String, known: Vec<String> },
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blueprint `{blueprint}` ({origin}) is invalid: {}", .problems.join("; "))]
    Invalid {
        blueprint: String,
        origin: String,
        problems: Vec<String>,
    },
    /// A `--blueprints-dir` blueprint that loads but breaks the policy `blueprint lint`
    /// checks; stores are never provisioned from one.
    #[error("blueprint `{blueprint}` ({origin}) breaks the blueprint policy ({} lint finding(s); `storeplane blueprint lint` lists them too): {}", .findings.len(), .findings.iter().map(policy_problem).collect::<Vec<_>>().join("; "))]
    Policy {
        blueprint: String,
        origin: String,
        findings: Vec<LintFinding>,
    },
}

/// A lint finding without the blueprint name, which the error already gives.
fn policy_problem(f: &LintFinding) -> String {
    format!("[{}] {}: {}", f.rule, f.object, f.message)
}

impl BlueprintError {
    /// One line per problem, for a person to read.
    pub fn problems(&self) -> Vec<String> {
        match self {
            BlueprintError::Invalid {
                blueprint,
                origin,
                problems,
            } => problems
                .iter()
                .map(|p| format!("blueprint `{blueprint}` ({origin}): {p}"))
                .collect(),
            BlueprintError::Policy {
                blueprint,
                origin,
                findings,
            } => findings
                .iter()
                .map(|f| {
                    format!(
                        "blueprint `{blueprint}` ({origin}) breaks the blueprint policy: {}",
                        policy_problem(f)
                    )
                })
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

/// `blueprint.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Engine name; must equal the folder name and be a DNS-1123 label.
    pub name: String,
    /// Blueprint version (not the engine's): bump it when the rendered objects change.
    pub version: String,
    /// One line for `storeplane blueprint list`.
    pub description: String,
    /// Templates rendered, in order, each with the phase its objects are applied in.
    pub templates: Vec<TemplateSpec>,
    /// Credentials the engine needs, generated once per store.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// The store's URLs, as minijinja expressions over the template context.
    #[serde(default)]
    pub urls: Vec<UrlSpec>,
    /// Plan name → row, handed to templates as `plan`. Its keys must equal the `plan`
    /// parameter's `enum`.
    #[serde(default)]
    pub plans: serde_json::Map<String, Value>,
    /// The Pod Security level the store namespace enforces, and declared exceptions to
    /// Storeplane's container policy.
    pub pod_security: PodSecurity,
    /// What "ready" means for the store's objects, for operators and the apply step.
    #[serde(default)]
    pub readiness: Vec<ReadinessNote>,
    /// JSON Schema (draft 2020-12) of the parameters.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// File name in the blueprint folder, ending in `.yaml.j2`.
    pub file: String,
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSpec {
    /// `storefront`, `admin`, …
    pub name: String,
    /// A minijinja expression evaluating to the URL, e.g. `scheme ~ "://" ~ host ~ "/"`.
    pub expression: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSecurity {
    /// Value of `pod-security.kubernetes.io/enforce` on the store namespace.
    pub level: PodSecurityLevel,
    /// Containers that cannot meet one of Storeplane's container rules, and why.
    #[serde(default)]
    pub exceptions: Vec<PodSecurityException>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    Restricted,
    Baseline,
    Privileged,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Restricted => "restricted",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Privileged => "privileged",
        }
    }
}

/// Rules a container may be excused from, with a reason.
pub const EXCEPTION_RULES: &[&str] = &["readOnlyRootFilesystem"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSecurityException {
    /// Container name.
    pub container: String,
    /// One of [`EXCEPTION_RULES`].
    pub rule: String,
    /// Why the image cannot meet the rule.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessNote {
    /// `Kind/name` of a rendered object.
    pub object: String,
    /// What ready means for it and how long it may take.
    pub note: String,
}

/// Where a blueprint was loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlueprintSource {
    /// Embedded in the binary from `templates/`.
    Builtin,
    /// A sub-folder of `--blueprints-dir`.
    Folder {
        path: PathBuf,
        overrides_builtin: bool,
    },
}

impl fmt::Display for BlueprintSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlueprintSource::Builtin => f.write_str("built-in"),
            BlueprintSource::Folder {
                path,
                overrides_builtin: true,
            } => write!(f, "{} (overrides built-in)", path.display()),
            BlueprintSource::Folder { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// One engine's blueprint, ready to render.
pub struct Blueprint {
    pub name: String,
    pub version: String,
    pub description: String,
    pub source: BlueprintSource,
    pub(crate) manifest: Manifest,
    pub(crate) validator: jsonschema::Validator,
    pub(crate) env: minijinja::Environment<'static>,
    /// The URL expressions, compiled apart from the templates (see
    /// [`engine::url_environment`]).
    pub(crate) url_env: minijinja::Environment<'static>,
    /// Template sources by file name (for lint).
    pub(crate) sources: BTreeMap<String, String>,
}

impl fmt::Debug for Blueprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blueprint")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Blueprint {
    /// The parameters' JSON Schema (draft 2020-12) with defaults, titles and descriptions.
    pub fn parameters_schema(&self) -> &Value {
        &self.manifest.parameters
    }

    /// The whole manifest as loaded.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn secret_specs(&self) -> &[SecretSpec] {
        &self.manifest.secrets
    }

    /// Plan names in the order the blueprint lists them.
    pub fn plans(&self) -> impl Iterator<Item = &str> {
        self.manifest.plans.keys().map(String::as_str)
    }

    pub fn pod_security(&self) -> &PodSecurity {
        &self.manifest.pod_security
    }

    pub fn readiness_notes(&self) -> &[ReadinessNote] {
        &self.manifest.readiness
    }

    /// `name@version`, the value of the `storeplane.dev/blueprint` annotation.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Validates user parameters against the schema and returns them with every default
    /// filled in. Lists every violation with its JSON-pointer path.
    pub fn validate_params(&self, params: &Value) -> Result<Value, ParamErrors> {
        let given = match params {
            Value::Null => Value::Object(serde_json::Map::new()),
            Value::Object(_) => params.clone(),
            other => {
                return Err(ParamErrors::single(
                    "",
                    format!(
                        "parameters must be an object (key: value pairs), got {}",
                        json_type(other)
                    ),
                ));
            }
        };
        let filled = params::fill_defaults(&self.manifest.parameters, &given);
        params::check(&self.validator, &self.manifest.parameters, &filled)?;
        Ok(filled)
    }

    /// Fresh values for every declared secret, from a CSPRNG. Call once per store.
    pub fn generate_secrets(&self) -> StoreSecrets {
        self.complete_secrets(StoreSecrets::new())
    }

    /// Keeps every value in `existing` and generates only the declared secrets it lacks
    /// (after a blueprint upgrade that adds one).
    pub fn complete_secrets(&self, mut existing: StoreSecrets) -> StoreSecrets {
        existing.complete(&self.manifest.secrets);
        existing
    }

    /// Loads one blueprint from its files (path relative to the blueprint folder →
    /// contents). `folder` is the folder's name, which must equal the manifest's `name`.
    pub fn from_files(
        folder: &str,
        source: BlueprintSource,
        files: BTreeMap<String, String>,
    ) -> Result<Blueprint, BlueprintError> {
        let origin = source.to_string();
        let invalid = |problems: Vec<String>| BlueprintError::Invalid {
            blueprint: folder.to_owned(),
            origin: origin.clone(),
            problems,
        };
        let manifest_text = files
            .get(MANIFEST_FILE)
            .ok_or_else(|| invalid(vec![format!("the folder has no {MANIFEST_FILE}")]))?;
        let manifest: Manifest = serde_yaml::from_str(manifest_text)
            .map_err(|e| invalid(vec![format!("{MANIFEST_FILE}: {e}")]))?;

        let mut problems = check_manifest(folder, &manifest, &files);

        let validator = match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&manifest.parameters)
        {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!(
                    "`parameters` is not a valid JSON Schema (draft 2020-12): {e} at {}",
                    e.instance_path()
                ));
                None
            }
        };

        let mut env = engine::environment();
        let mut sources = BTreeMap::new();
        for (path, text) in &files {
            if path.ends_with(".j2") {
                if let Err(e) = env.add_template_owned(path.clone(), text.clone()) {
                    problems.push(template_error(path, &e));
                }
                sources.insert(path.clone(), text.clone());
            }
        }
        let url_names = manifest
            .urls
            .iter()
            .map(|u| engine::url_template_name(&u.name))
            .collect();
        let mut url_env = engine::url_environment(url_names);
        for url in &manifest.urls {
            let name = engine::url_template_name(&url.name);
            if let Err(e) =
                url_env.add_template_owned(name, format!("{{{{ ({}) }}}}", url.expression))
            {
                problems.push(format!(
                    "url `{}`: the expression does not parse: {}",
                    url.name,
                    e.detail().unwrap_or("syntax error")
                ));
            }
        }

        let (Some(validator), true) = (validator, problems.is_empty()) else {
            return Err(invalid(problems));
        };
        let bp = Blueprint {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            description: manifest.description.clone(),
            source,
            manifest,
            validator,
            env,
            url_env,
            sources,
        };
        // The defaults alone must make valid parameters: lint, the CLI and forms rely on it.
        if let Err(errs) = bp.validate_params(&Value::Null) {
            return Err(invalid(
                errs.iter()
                    .map(|e| format!("the schema's defaults are not valid parameters: {e}"))
                    .collect(),
            ));
        }
        Ok(bp)
    }

    /// Loads a blueprint folder from disk.
    pub fn from_folder(path: &Path, overrides_builtin: bool) -> Result<Blueprint, BlueprintError> {
        let folder = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let mut files = BTreeMap::new();
        let entries = std::fs::read_dir(path).map_err(|source| BlueprintError::Io {
            path: path.to_owned(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| BlueprintError::Io {
                path: path.to_owned(),
                source,
            })?;
            let file = entry.path();
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !(name == MANIFEST_FILE || name.ends_with(".j2")) || !file.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&file).map_err(|source| BlueprintError::Io {
                path: file.clone(),
                source,
            })?;
            files.insert(name.to_owned(), text);
        }
        Blueprint::from_files(
            &folder,
            BlueprintSource::Folder {
                path: path.to_owned(),
                overrides_builtin,
            },
            files,
        )
    }
}

fn template_error(path: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
    format!(
        "template `{path}`{line}: {}",
        e.detail()
            .map(str::to_owned)
            .unwrap_or_else(|| e.to_string())
    )
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Whether `s` is a DNS-1123 label: 1–63 of `a-z 0-9 -`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Whether `s` is a label value: at most 63 characters of `A-Z a-z 0-9 - _ .`,
/// alphanumeric at both ends (empty is a value too).
pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// Whether `k` is a label key: `[prefix/]name`, the prefix a DNS-1123 subdomain, the
/// name a non-empty label value.
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, k),
    };
    !name.is_empty() && is_label_value(name) && prefix.is_none_or(is_dns1123_subdomain)
}

fn check_manifest(folder: &str, m: &Manifest, files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    if m.name != folder {
        problems.push(format!(
            "`name: {}` must equal the folder name `{folder}`",
            m.name
        ));
    }
    if !is_dns1123_label(&m.name) {
        problems.push(format!(
            "`name: {}` must be a DNS-1123 label (lowercase a-z, 0-9, '-')",
            m.name
        ));
    }
    if m.version.is_empty() || !is_label_value(&m.version) {
        problems.push(format!(
            "`version: {}` must be a non-empty label value (letters, digits, '.', '-', '_'), e.g. 1.0.0",
            m.version
        ));
    }
    if m.templates.is_empty() {
        problems.push("`templates` is empty; list each template with its phase".into());
    }
    let mut listed = BTreeSet::new();
    for t in &m.templates {
        if !listed.insert(t.file.as_str()) {
            problems.push(format!("template `{}` is listed twice", t.file));
        }
        if !t.file.ends_with(TEMPLATE_SUFFIX) {
            problems.push(format!(
                "template `{}` must end in `{TEMPLATE_SUFFIX}`",
                t.file
            ));
        }
        if !files.contains_key(&t.file) {
            problems.push(format!(
                "template `{}` is listed but the file does not exist",
                t.file
            ));
        }
    }
    for file in files.keys() {
        if file.starts_with('@') {
            problems.push(format!(
                "file `{file}`: names starting with `@` are reserved for Storeplane's internal templates; rename it"
            ));
        }
        if file.ends_with(TEMPLATE_SUFFIX)
            && !file.starts_with('_')
            && !listed.contains(file.as_str())
        {
            problems.push(format!(
                "template `{file}` is not listed in `templates`; add it with its phase (or name it `_…` if it is only included)"
            ));
        }
    }
    let mut secret_names = BTreeSet::new();
    for s in &m.secrets {
        if !secret_names.insert(s.name.as_str()) {
            problems.push(format!("secret `{}` is declared twice", s.name));
        }
        let ident = s.name.starts_with(|c: char| c.is_ascii_lowercase())
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ident {
            problems.push(format!(
                "secret `{}`: names use lowercase letters, digits and '_', starting with a letter",
                s.name
            ));
        }
        if !(MIN_SECRET_LENGTH..=MAX_SECRET_LENGTH).contains(&s.length) {
            problems.push(format!(
                "secret `{}`: length {} is outside {MIN_SECRET_LENGTH}..={MAX_SECRET_LENGTH}",
                s.name, s.length
            ));
        }
    }
    let mut url_names = BTreeSet::new();
    for u in &m.urls {
        if !url_names.insert(u.name.as_str()) {
            problems.push(format!("url `{}` is declared twice", u.name));
        }
    }
    for e in &m.pod_security.exceptions {
        if !EXCEPTION_RULES.contains(&e.rule.as_str()) {
            problems.push(format!(
                "pod_security exception for `{}`: rule `{}` cannot be excused; allowed: {}",
                e.container,
                e.rule,
                EXCEPTION_RULES.join(", ")
            ));
        }
        if e.reason.trim().is_empty() {
            problems.push(format!(
                "pod_security exception for `{}`: give the reason the image needs it",
                e.container
            ));
        }
    }
    if m.parameters.get("type").and_then(Value::as_str) != Some("object") {
        problems.push("`parameters` must be a schema with `type: object`".into());
    }
    let plan_enum: Option<BTreeSet<&str>> = m
        .parameters
        .pointer("/properties/plan/enum")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let plan_names: BTreeSet<&str> = m.plans.keys().map(String::as_str).collect();
    match plan_enum {
        Some(e) if e != plan_names => problems.push(format!(
            "the `plan` parameter's enum ({}) must list exactly the plans in `plans` ({})",
            e.into_iter().collect::<Vec<_>>().join(", "),
            plan_names.into_iter().collect::<Vec<_>>().join(", ")
        )),
        None if !plan_names.is_empty() => problems.push(
            "`plans` is given but the parameters have no `plan` property with an `enum` of them"
                .into(),
        ),
        _ => {}
    }
    for (name, row) in &m.plans {
        if !row.is_object() {
            problems.push(format!("plan `{name}` must be a mapping"));
        }
    }
    problems
}

/// Every loaded blueprint, sorted by name.
#[derive(Debug)]
pub struct Catalog {
    blueprints: Vec<Blueprint>,
}

impl Catalog {
    /// The blueprints built into the binary.
    pub fn builtin() -> Result<Catalog, BlueprintError> {
        let mut by_folder: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for path in BuiltinFiles::iter() {
            let Some((folder, file)) = path.split_once('/') else {
                continue;
            };
            if file.contains('/') {
                continue;
            }
            let data = BuiltinFiles::get(&path).expect("listed file exists");
            let text =
                String::from_utf8(data.data.into_owned()).map_err(|_| BlueprintError::Invalid {
                    blueprint: folder.to_owned(),
                    origin: BlueprintSource::Builtin.to_string(),
                    problems: vec![format!("{file} is not UTF-8")],
                })?;
            by_folder
                .entry(folder.to_owned())
                .or_default()
                .insert(file.to_owned(), text);
        }
        let blueprints = by_folder
            .into_iter()
            .map(|(folder, files)| Blueprint::from_files(&folder, BlueprintSource::Builtin, files))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Catalog { blueprints })
    }

    /// The built-in blueprints plus those in `settings.blueprints_dir` (one sub-folder per
    /// engine); a folder named like a built-in engine replaces it. What `serve` and
    /// `orchestrate` provision stores from: every folder blueprint is linted
    /// ([`lint_blueprint`]) and one with any finding is refused
    /// ([`BlueprintError::Policy`], naming every finding) — but for `quota-fit`
    /// findings, which are logged as warnings ([`blocks_provisioning`]). The built-ins are linted by
    /// the test suite instead.
    pub fn load(settings: &BlueprintSettings) -> Result<Catalog, BlueprintError> {
        Catalog::load_with(settings, true)
    }

    /// [`Catalog::load`] without the lint: for authoring tools that report findings
    /// themselves (`storeplane blueprint lint`, `list`, `render`). Never provision stores
    /// from it.
    pub fn load_unlinted(settings: &BlueprintSettings) -> Result<Catalog, BlueprintError> {
        Catalog::load_with(settings, false)
    }

    fn load_with(settings: &BlueprintSettings, lint: bool) -> Result<Catalog, BlueprintError> {
        let mut catalog = Catalog::builtin()?;
        if let Some(dir) = &settings.blueprints_dir {
            for bp in Catalog::read_dir(dir, &catalog)? {
                if lint {
                    let (findings, warnings): (Vec<_>, Vec<_>) = lint_blueprint(&bp)
                        .into_iter()
                        .partition(|f| blocks_provisioning(f.rule));
                    if !findings.is_empty() {
                        return Err(BlueprintError::Policy {
                            blueprint: bp.name.clone(),
                            origin: bp.source.to_string(),
                            findings,
                        });
                    }
                    for f in warnings {
                        tracing::warn!(
                            blueprint = %bp.name,
                            rule = f.rule,
                            object = %f.object,
                            "{}; stores of this blueprint will fail at admission",
                            f.message
                        );
                    }
                }
                catalog.insert(bp);
            }
        }
        Ok(catalog)
    }

    fn read_dir(dir: &Path, builtin: &Catalog) -> Result<Vec<Blueprint>, BlueprintError> {
        let io = |source| BlueprintError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if path.is_dir() && !hidden {
                folders.push(path);
            }
        }
        folders.sort();
        folders
            .into_iter()
            .map(|path| {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let overrides = builtin.blueprints.iter().any(|b| b.name == name);
                Blueprint::from_folder(&path, overrides)
            })
            .collect()
    }

    fn insert(&mut self, bp: Blueprint) {
        match self.blueprints.binary_search_by(|b| b.name.cmp(&bp.name)) {
            Ok(i) => self.blueprints[i] = bp,
            Err(i) => self.blueprints.insert(i, bp),
        }
    }

    /// A catalog of exactly these blueprints (tests, tools).
    pub fn from_blueprints(blueprints: impl IntoIterator<Item = Blueprint>) -> Catalog {
        let mut catalog = Catalog {
            blueprints: Vec::new(),
        };
        for bp in blueprints {
            catalog.insert(bp);
        }
        catalog
    }

    /// The blueprint for `engine`, or an error naming the known engines.
    pub fn get(&self, engine: &str) -> Result<&Blueprint, BlueprintError> {
        self.blueprints
            .iter()
            .find(|b| b.name == engine)
            .ok_or_else(|| BlueprintError::UnknownEngine {
                engine: engine.to_owned(),
                known: self.names(),
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Blueprint> {
        self.blueprints.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.blueprints.iter().map(|b| b.name.clone()).collect()
    }
}
