//! What the `render` and `blueprint` commands do, kept out of `main.rs`: turning flags into
//! a render, and formatting the catalog and lint findings for a terminal. Errors come
//! back as one message per problem, split into bad input (exit 2) and blueprint defects
//! (exit 1).
//!
//! Reads the secrets file and the blueprints folder; writes nothing (the caller prints).

use super::{
    Blueprint, BlueprintError, Catalog, LintFinding, RenderInput, StoreRef, StoreSecrets,
    id_from_name, params_from_assignments,
};
use crate::config::{BlueprintSettings, PlatformSettings};
use crate::domain;
use serde_json::Value;
use std::path::Path;

/// Output format of `storeplane render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Multi-document YAML.
    Yaml,
    /// A JSON `v1/List`.
    Json,
}

/// A failed command: every problem, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The user's input is wrong (engine, name, parameters, secrets file). Exit code 2.
    #[error("{}", .0.join("\n"))]
    BadInput(Vec<String>),
    /// A blueprint is broken. Exit code 1.
    #[error("{}", .0.join("\n"))]
    Blueprint(Vec<String>),
}

impl CommandError {
    pub fn problems(&self) -> &[String] {
        match self {
            CommandError::BadInput(p) | CommandError::Blueprint(p) => p,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::BadInput(_) => 2,
            CommandError::Blueprint(_) => 1,
        }
    }
}

fn from_blueprint_error(e: BlueprintError) -> CommandError {
    match e {
        // An unknown engine or an unreadable --blueprints-dir is the caller's mistake.
        BlueprintError::UnknownEngine { .. } | BlueprintError::Io { .. } => {
            CommandError::BadInput(e.problems())
        }
        other => CommandError::Blueprint(other.problems()),
    }
}

/// Loads the catalog for an authoring command (`render`, `blueprint list`, `blueprint
/// lint`): without the lint [`Catalog::load`] runs, so that `blueprint lint` can report
/// the findings itself and a blueprint being written can still be rendered.
pub fn load_catalog(settings: &BlueprintSettings) -> Result<Catalog, CommandError> {
    Catalog::load_unlinted(settings).map_err(from_blueprint_error)
}

/// `storeplane render`'s arguments.
#[derive(Debug, Clone)]
pub struct RenderRequest<'a> {
    pub engine: &'a str,
    pub name: &'a str,
    pub id: Option<uuid::Uuid>,
    pub sets: &'a [String],
    pub format: OutputFormat,
    pub secrets_file: Option<&'a Path>,
    pub blueprints: &'a BlueprintSettings,
    pub platform: &'a PlatformSettings,
}

/// The rendered manifests, plus notes for stderr.
#[derive(Debug, Clone)]
pub struct RenderOutput {
    pub manifests: String,
    pub notes: Vec<String>,
}

/// Renders a store from command-line input. Every input problem found is reported at
/// once; nothing is returned for stdout unless the whole render succeeds.
pub fn render(req: &RenderRequest<'_>) -> Result<RenderOutput, CommandError> {
    let catalog = load_catalog(req.blueprints)?;
    let mut problems = Vec::new();
    let blueprint = match catalog.get(req.engine) {
        Ok(bp) => Some(bp),
        Err(e) => {
            problems.extend(e.problems());
            None
        }
    };
    if let Err(reason) = domain::validate_store_name(req.name) {
        problems.push(format!(
            "invalid store name `{}`: {reason}",
            req.name.escape_debug()
        ));
    }
    let params = match params_from_assignments(req.sets) {
        Ok(p) => Some(p),
        Err(errs) => {
            problems.extend(errs);
            None
        }
    };
    if let (Some(bp), Some(p)) = (blueprint, &params)
        && let Err(errs) = bp.validate_params(p)
    {
        problems.extend(errs.iter().map(|e| format!("blueprint `{}`: {e}", bp.name)));
    }
    let mut notes = Vec::new();
    let secrets = match (blueprint, req.secrets_file) {
        (Some(bp), Some(path)) => match read_secrets(path) {
            Ok(s) => {
                let before: Vec<String> = s.names().map(str::to_owned).collect();
                let s = bp.complete_secrets(s);
                let added: Vec<&str> = s
                    .names()
                    .filter(|n| !before.iter().any(|b| b == n))
                    .collect();
                if !added.is_empty() {
                    notes.push(format!(
                        "generated secrets missing from {}: {}",
                        path.display(),
                        added.join(", ")
                    ));
                }
                Some(s)
            }
            Err(e) => {
                problems.push(e);
                None
            }
        },
        (Some(bp), None) => {
            notes.push(
                "generated fresh secrets for this render; pass --secrets-file to reuse a store's own"
                    .into(),
            );
            Some(bp.generate_secrets())
        }
        (None, _) => None,
    };
    if !problems.is_empty() {
        return Err(CommandError::BadInput(problems));
    }
    let (bp, params, secrets) = (
        blueprint.expect("no problems, so the engine is known"),
        params.expect("no problems, so parameters parsed"),
        secrets.expect("no problems, so secrets exist"),
    );
    let id = req.id.unwrap_or_else(|| id_from_name(req.name));
    let store = StoreRef::new(req.name, id);
    let rendered = bp
        .render_checked(&RenderInput {
            store: &store,
            params: &params,
            secrets: &secrets,
            platform: req.platform,
        })
        .map_err(|e| {
            if e.is_bad_input() {
                CommandError::BadInput(e.problems())
            } else {
                CommandError::Blueprint(e.problems())
            }
        })?;
    let manifests = match req.format {
        OutputFormat::Yaml => rendered.to_yaml(),
        OutputFormat::Json => rendered.to_json(),
    };
    Ok(RenderOutput { manifests, notes })
}

fn read_secrets(path: &Path) -> Result<StoreSecrets, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secrets file {}: {e}", path.display()))?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| {
        format!(
            "secrets file {} is not YAML: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let Value::Object(map) = value else {
        return Err(format!(
            "secrets file {} must be a mapping of secret name to string value",
            path.display()
        ));
    };
    let mut secrets = StoreSecrets::new();
    let mut bad = Vec::new();
    for (k, v) in map {
        match v {
            Value::String(s) => secrets.insert(k, s),
            _ => bad.push(k),
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "secrets file {}: values of {} must be strings",
            path.display(),
            bad.join(", ")
        ));
    }
    Ok(secrets)
}

/// `storeplane blueprint list`: a table of engine, version, source and description.
pub fn list_table(catalog: &Catalog) -> String {
    let rows: Vec<[String; 4]> = catalog
        .iter()
        .map(|b: &Blueprint| {
            [
                b.name.clone(),
                b.version.clone(),
                b.source.to_string(),
                b.description.clone(),
            ]
        })
        .collect();
    let header = [
        "ENGINE".to_owned(),
        "VERSION".to_owned(),
        "SOURCE".to_owned(),
        "DESCRIPTION".to_owned(),
    ];
    let mut widths = [0usize; 3];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (i, cell) in row.iter().enumerate() {
            if i < 3 {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// `storeplane blueprint lint`'s report: one line per finding, then a summary.
pub fn lint_report(catalog: &Catalog, findings: &[LintFinding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&f.to_string());
        out.push('\n');
    }
    let names = catalog.names().join(", ");
    if findings.is_empty() {
        out.push_str(&format!("lint: no findings in {names}\n"));
    } else {
        out.push_str(&format!("lint: {} finding(s) in {names}\n", findings.len()));
    }
    out
}
