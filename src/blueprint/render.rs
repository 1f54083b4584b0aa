//! Rendering one store from a blueprint: builds the template context, renders each
//! template, splits and parses the YAML documents, decodes every object into its typed
//! form (see `objects`), stamps the standard labels, annotations and namespace, and
//! evaluates the store's URLs. Same inputs, byte-identical output.
//!
//! Pure: no IO, no clock, no randomness (secrets are an input). Never logs a secret value.

use super::catalog::{Blueprint, MANIFEST_FILE};
use super::engine::url_template_name;
use super::objects::{self, Problem};
use super::params::ParamErrors;
use super::resources;
use super::secrets::StoreSecrets;
use crate::config::PlatformSettings;
use crate::domain::{self, Phase, annotations, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, GroupVersionKind, TypeMeta};
use minijinja::{Value as JValue, context};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// The store a render is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRef {
    pub id: Uuid,
    pub name: String,
    /// Always `crate::domain::store_namespace(name, id)`.
    pub namespace: String,
}

impl StoreRef {
    pub fn new(name: impl Into<String>, id: Uuid) -> StoreRef {
        let name = name.into();
        let namespace = domain::store_namespace(&name, &id);
        StoreRef {
            id,
            name,
            namespace,
        }
    }

    /// First 8 hex digits of the id, as used in the namespace.
    pub fn short_id(&self) -> String {
        crate::domain::store_short_id(&self.id)
    }

    /// The labels every object of the store carries.
    pub fn standard_labels(&self, engine: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED_BY.to_owned(), domain::MANAGED_BY.to_owned()),
            (labels::PART_OF.to_owned(), "storeplane".to_owned()),
            (labels::INSTANCE.to_owned(), self.namespace.clone()),
            (labels::STORE_ID.to_owned(), self.id.to_string()),
            (labels::STORE_NAME.to_owned(), self.name.clone()),
            (labels::ENGINE.to_owned(), engine.to_owned()),
        ])
    }
}

/// Everything a render takes. Same input, same bytes out.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    pub store: &'a StoreRef,
    /// User parameters; validated and completed with defaults by the render.
    pub params: &'a Value,
    pub secrets: &'a StoreSecrets,
    pub platform: &'a PlatformSettings,
}

/// A URL the store serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUrl {
    /// `storefront`, `admin`, …
    pub name: String,
    pub url: String,
}

/// One rendered object. Its `Debug` output hides the data of Secrets.
#[derive(Clone)]
pub struct RenderedObject {
    pub phase: Phase,
    /// The template file it came from.
    pub template: String,
    pub object: DynamicObject,
    pub gvk: GroupVersionKind,
    /// Namespace-scoped (true) or cluster-scoped (false).
    pub namespaced: bool,
}

impl fmt::Debug for RenderedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RenderedObject");
        d.field("phase", &self.phase)
            .field("template", &self.template)
            .field("gvk", &self.gvk)
            .field("namespaced", &self.namespaced)
            .field("metadata", &self.object.metadata);
        if self.gvk.kind == "Secret" {
            d.field("data", &"<redacted>");
        } else {
            d.field("data", &self.object.data);
        }
        d.finish()
    }
}

impl RenderedObject {
    /// `Kind/name`, for messages.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.gvk.kind,
            self.object.metadata.name.as_deref().unwrap_or("")
        )
    }

    pub fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or("")
    }
}

/// A rendered store: its objects sorted by phase (then template order) and its URLs.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub objects: Vec<RenderedObject>,
    pub urls: Vec<StoreUrl>,
    /// The parameters the render used, defaults filled in.
    pub params: Value,
    /// Findings of policy rules that do not keep a store from provisioning
    /// (`quota-fit`), filled in by [`Blueprint::render_checked`].
    pub policy_warnings: Vec<super::lint::LintFinding>,
}

impl Rendered {
    /// Multi-document YAML, one `---` per object.
    pub fn to_yaml(&self) -> String {
        let mut out = String::with_capacity(self.objects.len() * 1024);
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&o.object).expect("a decoded object serializes"));
        }
        out
    }

    /// A `v1/List` of the objects, pretty-printed JSON.
    pub fn to_json(&self) -> String {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": self.objects.iter().map(|o| &o.object).collect::<Vec<_>>(),
        });
        let mut s = serde_json::to_string_pretty(&list).expect("a decoded object serializes");
        s.push('\n');
        s
    }

    /// The phases that have objects, in apply order, each with its objects.
    pub fn phases(&self) -> impl Iterator<Item = (Phase, Vec<&RenderedObject>)> {
        Phase::ALL.into_iter().filter_map(|p| {
            let objs: Vec<&RenderedObject> = self.objects.iter().filter(|o| o.phase == p).collect();
            (!objs.is_empty()).then_some((p, objs))
        })
    }
}

/// One problem in one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub template: String,
    /// Where: a line of the template source, or of the template's rendered output.
    pub location: Location,
    pub message: String,
    /// Set when the renderer refused an object by policy (an object outside the store's
    /// namespace): the lint rule it breaks and the object's `Kind/name`.
    pub refused: Option<Refusal>,
}

/// An object the renderer refuses whatever the caller checks afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The lint rule id: `cluster-scoped` or `namespace`.
    pub rule: &'static str,
    /// `Kind/name`.
    pub object: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Unknown,
    /// 1-based line in the template file (template syntax and evaluation errors).
    Source(usize),
    /// 1-based line in the template's rendered output, with that line's text, and the
    /// template file's line it comes from when that is plain to see ([`source_line`]).
    Rendered {
        line: usize,
        text: String,
        source: Option<usize>,
    },
}

/// The line of a template's `source` that rendered as `rendered` (1-based): the one
/// source line equal to it, else the one with the same indentation and the same key
/// (`imagePullPolicy:`, `- name:`). `None` when no line or several could have: a line
/// built by a loop, a macro or an expression alone.
pub fn source_line(source: &str, rendered: &str) -> Option<usize> {
    let wanted = rendered.trim_end();
    if wanted.trim().is_empty() {
        return None;
    }
    let unique = |matches: &mut dyn Iterator<Item = usize>| {
        let first = matches.next()?;
        matches.next().is_none().then_some(first + 1)
    };
    let exact = unique(
        &mut source
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_end() == wanted)
            .map(|(i, _)| i),
    );
    if exact.is_some() {
        return exact;
    }
    let key_end = wanted
        .find(": ")
        .or_else(|| wanted.ends_with(':').then(|| wanted.len() - 1))?;
    let key = &wanted[..=key_end];
    if key.contains("{{") || key.trim_start().trim_start_matches("- ").trim() == ":" {
        return None;
    }
    unique(
        &mut source
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(key))
            .map(|(i, _)| i),
    )
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Unknown => write!(f, "template `{}`: {}", self.template, self.message),
            Location::Source(l) => {
                write!(f, "template `{}` line {l}: {}", self.template, self.message)
            }
            Location::Rendered {
                line,
                text,
                source: Some(source),
            } => write!(
                f,
                "template `{}` line {source} (rendered line {line}: `{}`): {}",
                self.template,
                text.trim(),
                self.message
            ),
            Location::Rendered {
                line,
                text,
                source: None,
            } => write!(
                f,
                "template `{}`, rendered line {line} (`{}`): {}",
                self.template,
                text.trim(),
                self.message
            ),
        }
    }
}

/// Why a store could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invalid store: {0}")]
    InvalidStore(String),
    #[error("blueprint `{blueprint}`: {errors}")]
    Params {
        blueprint: String,
        errors: ParamErrors,
    },
    #[error("blueprint `{blueprint}`: secrets missing: {}; generate them once with complete_secrets and keep them", .names.join(", "))]
    MissingSecrets {
        blueprint: String,
        names: Vec<String>,
    },
    /// Secrets that are not what their spec generates (alphabet and length). Templates
    /// put secrets into connection strings and config files as is, so a value outside
    /// its alphabet could change what those say.
    #[error("{}", .problems.iter().map(|p| format!("blueprint `{blueprint}`: {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidSecrets {
        blueprint: String,
        /// One per secret; each names the secret and what is allowed, never the value.
        problems: Vec<String>,
    },
    #[error("{}", .problems.iter().map(|p| format!("blueprint `{blueprint}`, {p}")).collect::<Vec<_>>().join("\n"))]
    Template {
        blueprint: String,
        problems: Vec<TemplateProblem>,
    },
    #[error("{}", .problems.iter().map(|p| format!("blueprint `{blueprint}`: plan `{plan}` is too small: {p}; choose smaller sizes or a larger plan")).collect::<Vec<_>>().join("\n"))]
    ExceedsPlan {
        blueprint: String,
        plan: String,
        problems: Vec<String>,
    },
    /// The render breaks a policy rule (see `blueprint lint`) for these parameters: a
    /// blueprint whose templates only do so for some inputs passes the lint of its
    /// defaults, and is still never provisioned.
    #[error("{}", .findings.iter().map(|f| format!("blueprint `{blueprint}` renders what the policy refuses for these parameters: {f}")).collect::<Vec<_>>().join("\n"))]
    Policy {
        blueprint: String,
        /// `[rule] Kind/name: what is wrong`, one per finding.
        findings: Vec<String>,
    },
}

impl RenderError {
    /// One line per problem, each understandable on its own.
    pub fn problems(&self) -> Vec<String> {
        match self {
            RenderError::Params { blueprint, errors } => errors
                .iter()
                .map(|e| format!("blueprint `{blueprint}`: {e}"))
                .collect(),
            other => other.to_string().lines().map(str::to_owned).collect(),
        }
    }

    /// Whether the caller's input (store, parameters, secrets) is at fault, rather than
    /// the blueprint.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RenderError::Template { .. })
    }
}

/// A document of a template's output: first line number (1-based) and text.
pub(crate) fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut pos = 0usize;
    for (line_no, line) in (1usize..).zip(super::yaml::split_lines(text)) {
        // Each line but the last was followed by its '\n'.
        let len = (pos + line.len() + 1).min(text.len()) - pos;
        if line.starts_with("---") && line.trim_end() == "---" {
            docs.push((start_line, &text[start..pos]));
            start = pos + len;
            start_line = line_no + 1;
        }
        pos += len;
    }
    docs.push((start_line, &text[start..]));
    docs.retain(|(_, d)| {
        d.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
    });
    docs
}

/// Parses a document: the fast parser when it answers (checked against serde_yaml in
/// debug builds), serde_yaml otherwise.
fn parse_yaml(doc: &str) -> Result<Value, serde_yaml::Error> {
    match super::yaml::parse(doc) {
        Some(v) => {
            #[cfg(debug_assertions)]
            {
                let slow: Result<Value, _> = serde_yaml::from_str(doc);
                debug_assert_eq!(
                    slow.as_ref().ok(),
                    Some(&v),
                    "the fast YAML parser disagrees with serde_yaml on:\n{doc}"
                );
            }
            Ok(v)
        }
        None => serde_yaml::from_str(doc),
    }
}

/// `text` with every secret value, as is and base64-encoded (the form a Secret's
/// `data` holds), replaced by `<secret>`.
fn redact_secrets(text: &str, secrets: &StoreSecrets) -> String {
    let mut out = text.to_owned();
    for (_, value) in secrets.iter().filter(|(_, v)| !v.is_empty()) {
        use base64::Engine as _;
        // Longest first: the value, its whole encoding (with the padding), then the
        // encodings of it inside a longer value.
        let mut forms = vec![
            value.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(value),
        ];
        forms.extend(base64_cores(value.as_bytes()));
        for form in &forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), "<secret>");
            }
        }
    }
    out
}

/// The base64 text a value becomes inside any encoded string that contains it (a
/// connection URL holding a password, encoded whole in a Secret's `data`): at each of
/// the three byte offsets it can start at, the characters that depend on its bytes
/// alone. Cores shorter than 8 characters are left out: too short to tell apart from
/// other text.
fn base64_cores(value: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    (0..3usize)
        .filter_map(|offset| {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(value);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            // Characters are 6 bits: skip those holding any bit of the offset, stop
            // before the first holding a bit of what follows the value.
            let start = (offset * 8).div_ceil(6);
            let end = (bytes.len() * 8) / 6;
            (end >= start + 8).then(|| encoded[start..end].to_owned())
        })
        .collect()
}

fn line_text(text: &str, line: usize) -> String {
    text.lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .to_owned()
}

/// The host a store is served at (`host` in templates): its `domain` parameter, or
/// `<store name>.<base domain>`. Unique across stores (the database holds it).
pub fn store_host(name: &str, params: &Value, platform: &PlatformSettings) -> String {
    match own_domain(params) {
        Some(d) => d.to_owned(),
        None => format!("{name}.{}", platform.base_domain),
    }
}

/// The store's own `domain` parameter, when it sets one.
pub fn own_domain(params: &Value) -> Option<&str> {
    params
        .get("domain")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
}

impl Blueprint {
    /// Renders a store. Validates the store name and parameters, requires every declared
    /// secret, and returns every object typed, labelled and sorted by phase.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
        let span =
            tracing::debug_span!("render", blueprint = %self.id(), store = %input.store.name);
        let _enter = span.enter();
        let store = input.store;
        let Prepared {
            params,
            ctx,
            std_labels,
            plan_name,
        } = self.prepare(input)?;
        let stamp = Stamp {
            labels: &std_labels,
            blueprint_id: self.id(),
            namespace: &store.namespace,
        };
        let mut objects = Vec::new();
        let mut problems = Vec::new();
        for spec in &self.manifest.templates {
            let text = match self
                .env
                .get_template(&spec.file)
                .and_then(|t| t.render(&ctx))
            {
                Ok(t) => t,
                Err(e) => {
                    problems.push(minijinja_problem(&spec.file, &e));
                    continue;
                }
            };
            for (first_line, doc) in split_documents(&text) {
                let at = |line: Option<usize>| match line {
                    Some(l) => {
                        let abs = first_line + l - 1;
                        Location::Rendered {
                            line: abs,
                            text: line_text(&text, abs),
                            source: None,
                        }
                    }
                    None => Location::Rendered {
                        line: first_line,
                        text: line_text(&text, first_line),
                        source: None,
                    },
                };
                let value: Value = match parse_yaml(doc) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(TemplateProblem {
                            template: spec.file.clone(),
                            location: at(e.location().map(|l| l.line())),
                            message: format!("the output is not valid YAML: {e}"),
                            refused: None,
                        });
                        continue;
                    }
                };
                if value.is_null() {
                    continue;
                }
                match objects::decode(value, doc) {
                    Ok((normalized, info)) => {
                        if let Some((path, refusal, message)) =
                            refuse_scope(&normalized, info, &store.namespace)
                        {
                            problems.push(TemplateProblem {
                                template: spec.file.clone(),
                                location: at(objects::locate(doc, &path)),
                                message,
                                refused: Some(refusal),
                            });
                            continue;
                        }
                        match stamp.apply(normalized, info, spec.phase) {
                            Ok(object) => objects.push(RenderedObject {
                                phase: spec.phase,
                                template: spec.file.clone(),
                                object,
                                gvk: GroupVersionKind::gvk(info.group, info.version, info.kind),
                                namespaced: info.namespaced,
                            }),
                            Err(msgs) => {
                                problems.extend(msgs.into_iter().map(|m| TemplateProblem {
                                    template: spec.file.clone(),
                                    location: at(None),
                                    message: m,
                                    refused: None,
                                }))
                            }
                        }
                    }
                    Err(errs) => {
                        problems.extend(errs.into_iter().map(|Problem { line, message }| {
                            TemplateProblem {
                                template: spec.file.clone(),
                                location: at(line),
                                message,
                                refused: None,
                            }
                        }))
                    }
                }
            }
        }

        let mut urls = Vec::with_capacity(self.manifest.urls.len());
        for u in &self.manifest.urls {
            let name = url_template_name(&u.name);
            match self
                .url_env
                .get_template(&name)
                .and_then(|t| t.render(&ctx))
            {
                Ok(url) => urls.push(StoreUrl {
                    name: u.name.clone(),
                    url,
                }),
                Err(e) => problems.push(TemplateProblem {
                    template: format!("{MANIFEST_FILE} urls.{}", u.name),
                    location: Location::Unknown,
                    message: minijinja_message(&e),
                    refused: None,
                }),
            }
        }
        if !problems.is_empty() {
            // Problems travel on to logs, events and API answers: the store's
            // credentials, which a faulty template may have put on the line quoted or
            // into a decoder's message, never do.
            for p in &mut problems {
                p.message = redact_secrets(&p.message, input.secrets);
                if let Location::Rendered { text, source, .. } = &mut p.location {
                    *source = self
                        .sources
                        .get(&p.template)
                        .and_then(|src| source_line(src, text));
                    *text = redact_secrets(text, input.secrets);
                }
            }
            return Err(RenderError::Template {
                blueprint: self.name.clone(),
                problems,
            });
        }

        // Storage is the one quota a user's parameters can overrun; say so before apply.
        if let Some(quota) = objects.iter().find(|o| o.gvk.kind == "ResourceQuota") {
            let hard = quota
                .object
                .data
                .pointer("/spec/hard")
                .cloned()
                .unwrap_or(Value::Null);
            let f = resources::footprint(
                objects
                    .iter()
                    .map(|o| (o.gvk.kind.as_str(), &o.object.data)),
            );
            let over = resources::exceeded(&f, &hard, true);
            if !over.is_empty() {
                return Err(RenderError::ExceedsPlan {
                    blueprint: self.name.clone(),
                    plan: plan_name,
                    problems: over,
                });
            }
        }

        objects.sort_by_key(|o| o.phase);
        tracing::debug!(objects = objects.len(), "rendered");
        Ok(Rendered {
            objects,
            urls,
            params,
            policy_warnings: Vec::new(),
        })
    }

    /// [`Blueprint::render`], refusing a render that breaks a policy rule which keeps a
    /// blueprint from provisioning (`Policy`): what is applied to a cluster is checked
    /// store by store, not only the blueprint's defaults.
    pub fn render_checked(&self, input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
        let mut rendered = self.render(input)?;
        let (blocking, warnings): (Vec<_>, Vec<_>) =
            super::lint::check_rendered(self, input.store, input.secrets, &rendered)
                .into_iter()
                .partition(|f| super::lint::blocks_provisioning(f.rule));
        rendered.policy_warnings = warnings;
        let findings: Vec<String> = blocking
            .into_iter()
            .map(|f| format!("[{}] {}: {}", f.rule, f.object, f.message))
            .collect();
        if findings.is_empty() {
            Ok(rendered)
        } else {
            Err(RenderError::Policy {
                blueprint: self.name.clone(),
                findings,
            })
        }
    }

    /// Renders a would-be store with throw-away secrets and the default platform
    /// settings, to refuse before it exists what its first real render would refuse:
    /// volumes that together overrun the plan's storage quota (`ExceedsPlan`),
    /// parameters the blueprint's templates cannot render (`Template`), or a store the
    /// policy refuses (`Policy`).
    pub fn check_renders(
        &self,
        name: &str,
        params: &Value,
        platform: &PlatformSettings,
    ) -> Result<(), RenderError> {
        let store = StoreRef::new(name, Uuid::nil());
        self.render_checked(&RenderInput {
            store: &store,
            params,
            secrets: &self.generate_secrets(),
            platform,
        })
        .map(drop)
    }

    /// Checks the input and builds the template context.
    pub(crate) fn prepare(&self, input: &RenderInput<'_>) -> Result<Prepared, RenderError> {
        let store = input.store;
        if let Err(reason) = domain::validate_store_name(&store.name) {
            return Err(RenderError::InvalidStore(format!(
                "store name `{}` {reason}",
                store.name.escape_debug()
            )));
        }
        let expected_ns = domain::store_namespace(&store.name, &store.id);
        if store.namespace != expected_ns {
            return Err(RenderError::InvalidStore(format!(
                "namespace `{}` does not match the store; it must be `{expected_ns}`",
                store.namespace
            )));
        }
        let params = self
            .validate_params(input.params)
            .map_err(|errors| RenderError::Params {
                blueprint: self.name.clone(),
                errors,
            })?;
        let missing: Vec<String> = self
            .manifest
            .secrets
            .iter()
            .filter(|s| !input.secrets.contains(&s.name))
            .map(|s| s.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(RenderError::MissingSecrets {
                blueprint: self.name.clone(),
                names: missing,
            });
        }
        // Only declared secrets reach the templates, each checked against its spec.
        let mut secrets: BTreeMap<&str, &str> = BTreeMap::new();
        let mut invalid = Vec::new();
        for spec in &self.manifest.secrets {
            let value = input.secrets.get(&spec.name).unwrap_or_default();
            match spec.check(value) {
                Ok(()) => {
                    secrets.insert(&spec.name, value);
                }
                Err(problem) => invalid.push(problem),
            }
        }
        if !invalid.is_empty() {
            return Err(RenderError::InvalidSecrets {
                blueprint: self.name.clone(),
                problems: invalid,
            });
        }

        let plan_name = params
            .get("plan")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let plan = self
            .manifest
            .plans
            .get(&plan_name)
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let host = store_host(&store.name, &params, input.platform);
        // An issuer or class set to "" (an empty env value) is none.
        let tls_issuer = input
            .platform
            .tls_issuer
            .as_deref()
            .filter(|s| !s.is_empty());
        let storage_class = input
            .platform
            .storage_class
            .as_deref()
            .filter(|s| !s.is_empty());
        let scheme = if tls_issuer.is_some() {
            "https"
        } else {
            "http"
        };
        let std_labels = store.standard_labels(&self.name);
        let ctx = context! {
            store => context! {
                id => store.id.to_string(),
                short_id => store.short_id(),
                name => &store.name,
                namespace => &store.namespace,
            },
            params => JValue::from_serialize(&params),
            secrets => JValue::from_serialize(&secrets),
            platform => context! {
                base_domain => &input.platform.base_domain,
                ingress_class => &input.platform.ingress_class,
                ingress_namespace => &input.platform.ingress_namespace,
                ingress_pod_labels => &input.platform.ingress_pod_labels.0,
                tls_issuer => tls_issuer,
                storage_class => storage_class,
            },
            plan => JValue::from_serialize(&plan),
            labels => JValue::from_object(super::engine::Labels(std_labels.clone())),
            blueprint => context! {
                name => &self.name,
                version => &self.version,
                pod_security => self.manifest.pod_security.level.as_str(),
            },
            host => &host,
            scheme => scheme,
        };

        Ok(Prepared {
            params,
            ctx,
            std_labels,
            plan_name,
        })
    }
}

/// A checked render input: parameters with defaults, and the template context.
pub(crate) struct Prepared {
    pub params: Value,
    pub ctx: JValue,
    pub std_labels: BTreeMap<String, String>,
    pub plan_name: String,
}

fn minijinja_message(e: &minijinja::Error) -> String {
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        msg.push_str(
            " (a variable or attribute the template uses is not in the context; see docs/blueprints.md)",
        );
    }
    msg
}

fn minijinja_problem(template: &str, e: &minijinja::Error) -> TemplateProblem {
    TemplateProblem {
        template: e.name().unwrap_or(template).to_owned(),
        location: e.line().map(Location::Source).unwrap_or(Location::Unknown),
        message: minijinja_message(e),
        refused: None,
    }
}

/// Refuses an object outside the store: a cluster-scoped one other than the store's own
/// Namespace, or a namespaced one with another `metadata.namespace`. Lint reports the same
/// under the same rule ids, but the render itself refuses, so no caller can apply one.
/// Returns the path to point at, the refusal and the message.
fn refuse_scope(
    value: &Value,
    info: &objects::KindInfo,
    store_namespace: &str,
) -> Option<(Vec<objects::Seg>, Refusal, String)> {
    use objects::Seg;
    let meta = value.get("metadata");
    let field = |f: &str| meta.and_then(|m| m.get(f)).and_then(Value::as_str);
    let name = field("name").unwrap_or("");
    let refusal = |rule| Refusal {
        rule,
        object: format!("{}/{name}", info.kind),
    };
    let at = |f: &str| vec![Seg::Key("metadata".into()), Seg::Key(f.into())];
    if !info.namespaced {
        if info.kind != "Namespace" {
            return Some((
                vec![Seg::Key("kind".into())],
                refusal("cluster-scoped"),
                format!(
                    "{} `{name}` is cluster-scoped; a store may only create objects in its own namespace (and that Namespace)",
                    info.kind
                ),
            ));
        }
        if name != store_namespace {
            return Some((
                at("name"),
                refusal("namespace"),
                format!(
                    "Namespace `{name}` is not the store's; the only Namespace a store may create is its own, `{store_namespace}` (`{{{{ store.namespace }}}}`)"
                ),
            ));
        }
        return None;
    }
    match field("namespace") {
        Some(ns) if ns != store_namespace => Some((
            at("namespace"),
            refusal("namespace"),
            format!(
                "{} `{name}` is in namespace `{ns}`, not the store's `{store_namespace}`; remove metadata.namespace",
                info.kind
            ),
        )),
        _ => None,
    }
}

/// What the renderer stamps onto every object.
struct Stamp<'a> {
    labels: &'a BTreeMap<String, String>,
    blueprint_id: String,
    namespace: &'a str,
}

impl Stamp<'_> {
    fn apply(
        &self,
        mut value: Value,
        info: &objects::KindInfo,
        phase: Phase,
    ) -> Result<DynamicObject, Vec<String>> {
        let mut problems = Vec::new();
        let map = value.as_object_mut().expect("decoded objects are mappings");
        map.remove("apiVersion");
        map.remove("kind");
        let meta_value = map.remove("metadata").unwrap_or(Value::Null);
        let mut metadata = ObjectMeta::deserialize(&meta_value).unwrap_or_default();
        if info.namespaced && metadata.namespace.is_none() {
            metadata.namespace = Some(self.namespace.to_owned());
        }
        let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
        merge_into(labels, self.labels, "label", &mut problems);
        let wanted = BTreeMap::from([
            (annotations::BLUEPRINT.to_owned(), self.blueprint_id.clone()),
            (annotations::PHASE.to_owned(), phase.as_str().to_owned()),
        ]);
        let ann = metadata.annotations.get_or_insert_with(BTreeMap::new);
        merge_into(ann, &wanted, "annotation", &mut problems);

        // Pods (and the Jobs a CronJob creates) carry the store's labels too, so that
        // everything a store runs can be found by them.
        let template_labels: &[&str] = match info.kind {
            "Deployment" | "StatefulSet" | "Job" => &["/spec/template/metadata/labels"],
            "CronJob" => &[
                "/spec/jobTemplate/metadata/labels",
                "/spec/jobTemplate/spec/template/metadata/labels",
            ],
            _ => &[],
        };
        for path in template_labels {
            ensure_object_at(&mut value, path);
            if let Some(labels) = value.pointer_mut(path).and_then(Value::as_object_mut) {
                for (k, v) in self.labels {
                    match labels.get(k).and_then(Value::as_str) {
                        Some(existing) if existing != v => {
                            problems.push(conflict("label", k, existing, v))
                        }
                        Some(_) => {}
                        None => {
                            labels.insert(k.clone(), Value::String(v.clone()));
                        }
                    }
                }
                // Sorted, as Kubernetes itself prints label maps.
                labels.sort_keys();
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(DynamicObject {
            types: Some(TypeMeta {
                api_version: info.api_version.to_owned(),
                kind: info.kind.to_owned(),
            }),
            metadata,
            data: value,
        })
    }
}

fn ensure_object_at(value: &mut Value, pointer: &str) {
    let mut cur = value;
    for seg in pointer.split('/').skip(1) {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(seg.to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

/// A label or annotation the template sets to something other than Storeplane's value.
fn conflict(what: &str, key: &str, existing: &str, wanted: &str) -> String {
    format!(
        "{what} `{key}` is set to `{existing}` but Storeplane sets it to `{wanted}`; remove it from the template"
    )
}

fn merge_into(
    target: &mut BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    what: &str,
    problems: &mut Vec<String>,
) {
    for (k, v) in wanted {
        match target.get(k) {
            Some(existing) if existing != v => problems.push(conflict(what, k, existing, v)),
            Some(_) => {}
            None => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_inside_encoded_composites() {
        use base64::Engine as _;
        let password = "Kq3vX9pLm2Zt7RbW4nYc8HsJ";
        let secrets: StoreSecrets = [("postgres_password".to_owned(), password.to_owned())]
            .into_iter()
            .collect();
        // The password at each byte offset of a larger value, as a Secret's `data`
        // holds a connection URL: none of its encoded bytes survive the redaction.
        for prefix in ["", "a", "ab", "postgres://medusa:"] {
            let url = format!("{prefix}{password}@postgres:5432/medusa?sslmode=disable");
            let encoded = base64::engine::general_purpose::STANDARD.encode(&url);
            let text = format!("DATABASE_URL: {encoded}");
            let out = redact_secrets(&text, &secrets);
            assert!(out.contains("<secret>"), "offset {}: {out}", prefix.len());
            for core in base64_cores(password.as_bytes()) {
                assert!(!out.contains(&core), "{out}");
            }
        }
        // As written and encoded alone, as before.
        let alone = base64::engine::general_purpose::STANDARD.encode(password);
        let out = redact_secrets(&format!("{password} {alone}"), &secrets);
        assert!(
            !out.contains(password) && !out.contains(&alone[..30]),
            "{out}"
        );
        // Text with no secret is untouched.
        assert_eq!(redact_secrets("plain text", &secrets), "plain text");
    }

    #[test]
    fn documents_split_on_separator_lines_only() {
        let text = "a: 1\n---\n# comment only\n---\nb: \"---\"\nc: |\n  ---x\n---\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(docs[0], (1, "a: 1\n"));
        assert_eq!(docs[1].0, 5);
        assert!(docs[1].1.starts_with("b: \"---\""));
    }
}
