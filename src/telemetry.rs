//! Logging set-up shared by every command: a `tracing` subscriber writing to stderr in
//! text or JSON, filtered by `STOREPLANE_LOG`. Text is coloured only on a terminal (and
//! never with `NO_COLOR` set), so log files and collectors get plain lines.
//!
//! Owns nothing else; metrics live with the API.

use crate::config::{LogFormat, LogSettings};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Logs go to stderr so that commands printing
/// manifests or specs keep stdout clean.
pub fn init(settings: &LogSettings) -> Result<(), String> {
    let filter = EnvFilter::try_new(&settings.filter).map_err(|e| {
        format!(
            "invalid log filter `{}` ({e}); use e.g. `info` or `storeplane=debug`",
            settings.filter
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ));
    let result = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("logging is already initialised: {e}"))
}

/// Whether text logs carry ANSI colours: only on a terminal, and not when `NO_COLOR`
/// is set to a non-empty value (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Formats an error with its whole cause chain: `outer: inner: root`. A cause whose
/// text an outer error already quotes (`… ({0}) …`) is not repeated.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{colour, error_chain};
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot start: {0}")]
        Quoted(#[source] std::io::Error),
        #[error("cannot start")]
        Plain(#[source] std::io::Error),
    }

    #[test]
    fn causes_are_appended_once() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(error_chain(&Outer::Plain(io())), "cannot start: disk full");
        assert_eq!(error_chain(&Outer::Quoted(io())), "cannot start: disk full");
    }
}
