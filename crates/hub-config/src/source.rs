//! Where a configuration value came from, for errors that name the file, the line and the
//! key; and the error type itself.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::template::Template;

/// A configuration error, already formatted for the admin: it names the file, the line and the
/// key, and says what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

/// Turns byte offsets into "line N" for messages.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    pub(crate) fn err<T>(&self, key: &str, spanned: &Spanned<T>, problem: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: line {}: `{key}` {problem}", self.path.display(), self.line_of(spanned.span().start)))
    }

    pub(crate) fn duration(
        &self,
        key: &str,
        v: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        humantime::parse_duration(v.get_ref())
            .map_err(|e| self.err(key, v, format!("is not a duration ({e}); write e.g. \"60s\", \"5m\" or \"1h 30m\"")))
    }

    pub(crate) fn template(&self, key: &str, v: &Spanned<String>, allowed: &[&str]) -> Result<Template, ConfigError> {
        crate::template::Template::parse(v.get_ref(), allowed).map_err(|e| self.err(key, v, e))
    }
}
