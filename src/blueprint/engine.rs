//! The minijinja environment every blueprint's templates are compiled into: strict
//! undefined, JSON auto-escaping made safe for YAML, no `safe` filter, and the helpers a
//! template may call (`component_labels`, `selector_labels`, `merge`, `b64encode`).
//!
//! Escaping is the injection guard: every `{{ value }}` is written as a JSON literal (a
//! double-quoted string for strings), which YAML reads back as exactly that value, so no
//! parameter can add keys, documents or objects. Characters that YAML would fold or refuse
//! inside a double-quoted scalar are written as `\uXXXX` escapes too.
//!
//! This module builds environments; it must not read files or know about stores.

use crate::domain::labels;
use base64::Engine as _;
use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use std::collections::{BTreeMap, BTreeSet};

/// Prefix of the internal templates that evaluate a blueprint's URL expressions. They are
/// rendered without escaping: their output is a plain string, not YAML. Blueprint files
/// may not start with `@` (a load error), so no template of theirs can take such a name.
pub const URL_TEMPLATE_PREFIX: &str = "@url:";

/// The internal template name of the URL called `url`.
pub fn url_template_name(url: &str) -> String {
    format!("{URL_TEMPLATE_PREFIX}{url}")
}

/// A fresh environment with Storeplane's settings and helpers and no templates. Every
/// template compiled into it is auto-escaped.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| AutoEscape::Json);
    env.set_formatter(format_value);
    // `safe` would print a value unescaped: the one way around the injection guard.
    env.remove_filter("safe");
    env.add_filter("b64encode", b64encode);
    env.add_filter("merge", merge);
    env.add_function("component_labels", component_labels);
    env.add_function("selector_labels", selector_labels);
    env
}

/// The environment a blueprint's URL expressions are compiled into: like
/// [`environment`], but the templates named exactly as in `url_templates` (see
/// [`url_template_name`]) render unescaped. It is kept apart from the blueprint's own
/// templates, so that none of them can `include` or `import` a URL template and write its
/// output into YAML unescaped.
pub fn url_environment(url_templates: BTreeSet<String>) -> Environment<'static> {
    let mut env = environment();
    env.set_auto_escape_callback(move |name| {
        if url_templates.contains(name) {
            AutoEscape::None
        } else {
            AutoEscape::Json
        }
    });
    env.set_formatter(|out, state, value| {
        if state.auto_escape() == AutoEscape::Json {
            format_value(out, state, value)
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// Prints a value JSON-escaped (safe for YAML), and refuses to print one where a
/// template turned escaping off or to another mode (`{% autoescape false %}`,
/// `{% autoescape "html" %}`): there a parameter could inject YAML.
fn format_value(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if state.auto_escape() != AutoEscape::Json {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value is printed with auto-escaping turned off or changed by \
             `{% autoescape %}`; blueprint templates print every value JSON-escaped so \
             that no parameter can inject YAML: remove the autoescape block",
        ));
    }
    if !value.is_safe() {
        // One buffer, one write: serde_json writes in many small pieces, and each piece
        // through the escaper cost more than the JSON itself.
        let json = serde_json::to_string(value).map_err(|e| {
            Error::new(
                ErrorKind::BadSerialization,
                "value cannot be written as JSON",
            )
            .with_source(e)
        })?;
        write_yaml_safe(out, &json).map_err(|e| {
            Error::new(
                ErrorKind::WriteFailure,
                "could not write the template output",
            )
            .with_source(e)
        })
    } else {
        minijinja::escape_formatter(out, state, value)
    }
}

/// Characters YAML treats as line breaks (folded inside quotes) or refuses outright.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    )
}

/// Writes JSON text so that a YAML parser reads back the same value: the characters in
/// [`needs_escape`] only ever occur inside JSON strings, where `\uXXXX` is valid JSON and
/// valid YAML.
pub fn write_yaml_safe(out: &mut impl std::fmt::Write, json: &str) -> std::fmt::Result {
    if json.bytes().all(|b| b < 0x7f) {
        return out.write_str(json);
    }
    let mut rest = json;
    while let Some(pos) = rest.find(needs_escape) {
        out.write_str(&rest[..pos])?;
        let c = rest[pos..].chars().next().expect("found a char");
        write!(out, "\\u{:04x}", c as u32)?;
        rest = &rest[pos + c.len_utf8()..];
    }
    out.write_str(rest)
}

fn b64encode(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

fn to_map(value: &Value, what: &str) -> Result<BTreeMap<String, Value>, Error> {
    let mut map = BTreeMap::new();
    let iter = value.try_iter().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{what} must be a map, got {}", value.kind()),
        )
    })?;
    for key in iter {
        let v = value.get_item(&key)?;
        map.insert(key.to_string(), v);
    }
    Ok(map)
}

/// `a | merge(b)`: the keys of both maps; `b` wins.
fn merge(a: Value, b: Value) -> Result<Value, Error> {
    let mut map = to_map(&a, "the value before `merge`")?;
    map.extend(to_map(&b, "the argument of `merge`")?);
    Ok(Value::from(map))
}

/// The store's standard labels as a template value: a read-only map that the label
/// helpers read without converting it.
#[derive(Debug)]
pub struct Labels(pub BTreeMap<String, String>);

impl minijinja::value::Object for Labels {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).map(|v| Value::from(v.as_str()))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.0.keys().map(|k| Value::from(k.as_str())).collect(),
        )
    }
}

fn standard_labels(state: &State) -> Result<BTreeMap<String, Value>, Error> {
    let labels = state.lookup("labels").ok_or_else(|| {
        Error::new(
            ErrorKind::UndefinedError,
            "`labels` is not in the context; the label helpers need it",
        )
    })?;
    if let Some(l) = labels.downcast_object_ref::<Labels>() {
        return Ok(l
            .0
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect());
    }
    to_map(&labels, "`labels`")
}

/// `component_labels("database", name="mysql")`: the store's standard labels plus
/// `app.kubernetes.io/component` (and `app.kubernetes.io/name` when given).
fn component_labels(state: &State, component: &str, kwargs: Kwargs) -> Result<Value, Error> {
    let mut map = standard_labels(state)?;
    map.insert(labels::COMPONENT.into(), Value::from(component));
    if let Some(name) = kwargs.get::<Option<&str>>("name")? {
        map.insert(labels::NAME.into(), Value::from(name));
    }
    kwargs.assert_all_used()?;
    Ok(Value::from(map))
}

/// `selector_labels("database")`: the minimal, never-changing labels that select one
/// component's pods (`app.kubernetes.io/instance` + `app.kubernetes.io/component`).
fn selector_labels(state: &State, component: &str) -> Result<Value, Error> {
    let standard = standard_labels(state)?;
    let mut map = BTreeMap::new();
    if let Some(instance) = standard.get(labels::INSTANCE) {
        map.insert(labels::INSTANCE.to_owned(), instance.clone());
    }
    map.insert(labels::COMPONENT.to_owned(), Value::from(component));
    Ok(Value::from(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(src: &str, ctx: Value) -> Result<String, Error> {
        let mut env = environment();
        env.add_template_owned("t.yaml.j2", src.to_owned())?;
        env.get_template("t.yaml.j2")?.render(ctx)
    }

    #[test]
    fn values_are_json_literals() {
        let out = render(
            "a: {{ s }}\nb: {{ n }}\nc: {{ m }}\n",
            context! { s => "x: y\n- z", n => 3, m => context!{ k => "v" } },
        )
        .unwrap();
        assert_eq!(out, "a: \"x: y\\n- z\"\nb: 3\nc: {\"k\":\"v\"}\n");
    }

    #[test]
    fn hostile_strings_read_back_unchanged() {
        for s in [
            "a\nb: c\n---\nkind: Secret",
            "\"quoted\" 'single' {{ x }} {% y %}",
            "tab\there \u{85} nel \u{2028} ls \u{2029} ps \u{feff} bom \u{7f} del \u{9f}",
            "emoji 🚀 and ünïcödé",
            "# not a comment",
            "&anchor *alias !tag %directive @at `tick`",
        ] {
            let out = render("v: {{ s }}\n", context! { s => s }).unwrap();
            let back: serde_json::Value = serde_yaml::from_str(&out).unwrap();
            assert_eq!(back["v"], s, "{out}");
            assert_eq!(back.as_object().unwrap().len(), 1);
        }
    }

    #[test]
    fn strict_undefined_fails() {
        let err = render("a: {{ nope }}\n", context! {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
        let err = render("a: {{ x.nope }}\n", context! { x => context!{} }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn only_the_exact_url_templates_render_unescaped() {
        let src = "{{ s }}";
        let ctx = context! { s => "a\nb: c" };
        // Whatever its name, a template of the main environment is escaped.
        let mut env = environment();
        for name in ["@url:storefront", "@url:x.yaml.j2", "t.yaml.j2"] {
            env.add_template_owned(name.to_owned(), src.to_owned())
                .unwrap();
            let out = env.get_template(name).unwrap().render(&ctx).unwrap();
            assert_eq!(out, "\"a\\nb: c\"", "{name}");
        }
        // In the URL environment, only the names it was given are unescaped.
        let mut env = url_environment(BTreeSet::from([url_template_name("storefront")]));
        for (name, escaped) in [
            ("@url:storefront", false),
            ("@url:storefront2", true),
            ("@url:", true),
            ("x@url:storefront", true),
        ] {
            env.add_template_owned(name.to_owned(), src.to_owned())
                .unwrap();
            let out = env.get_template(name).unwrap().render(&ctx).unwrap();
            let want = if escaped { "\"a\\nb: c\"" } else { "a\nb: c" };
            assert_eq!(out, want, "{name}");
        }
    }

    #[test]
    fn escaping_cannot_be_turned_off() {
        for src in [
            "a: {% autoescape false %}{{ s }}{% endautoescape %}\n",
            "a: {% autoescape not true %}{{ s }}{% endautoescape %}\n",
            "a: {% autoescape 'none' %}{{ s }}{% endautoescape %}\n",
            "a: {% autoescape 'html' %}{{ s }}{% endautoescape %}\n",
        ] {
            let err = render(src, context! { s => "x\n---\nkind: Pod" }).unwrap_err();
            assert!(
                err.to_string().contains("remove the autoescape block"),
                "{src}: {err}"
            );
        }
        // Turned back on: fine.
        let out = render(
            "a: {% autoescape true %}{{ s }}{% endautoescape %}\n",
            context! { s => "x" },
        )
        .unwrap();
        assert_eq!(out, "a: \"x\"");
    }

    #[test]
    fn safe_is_not_available() {
        let err = render("a: {{ s | safe }}\n", context! { s => "x" }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownFilter);
    }

    #[test]
    fn label_helpers() {
        let mut std_labels = BTreeMap::new();
        std_labels.insert("app.kubernetes.io/instance", "shop");
        std_labels.insert("storeplane.dev/store-id", "1");
        let labels = context! { labels => std_labels };
        let out = render(
            "a: {{ component_labels('web', name='wordpress') }}\nb: {{ selector_labels('web') }}\nc: {{ {'x': '1'} | merge({'y': '2'}) }}\nd: {{ 'hi' | b64encode }}\n",
            labels,
        )
        .unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["a"]["app.kubernetes.io/component"], "web");
        assert_eq!(v["a"]["app.kubernetes.io/name"], "wordpress");
        assert_eq!(v["a"]["storeplane.dev/store-id"], "1");
        assert_eq!(
            v["b"],
            serde_json::json!({"app.kubernetes.io/component": "web", "app.kubernetes.io/instance": "shop"})
        );
        assert_eq!(v["c"], serde_json::json!({"x": "1", "y": "2"}));
        assert_eq!(v["d"], "aGk=");
    }
}
