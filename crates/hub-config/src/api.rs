//! `[api]` and `[[services]]`: the REST API's paging and metrics settings, and the external
//! programs that call it with their own token.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

/// `[api]`: the JupyterHub-compatible REST API under `/hub/api`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Items per page when a list request gives no `limit` (JupyterHub's
    /// `api_page_default_limit`).
    pub page_default_limit: usize,
    /// Largest `limit` honoured (JupyterHub's `api_page_max_limit`).
    pub page_max_limit: usize,
    /// Whether `/hub/metrics` needs a token or session with `read:metrics` (JupyterHub's
    /// `authenticate_prometheus`).
    pub authenticate_metrics: bool,
}

/// Where a service's API token comes from: never written in hub.toml itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file readable by root only (checked when the hub starts); surrounding whitespace is
    /// ignored.
    File(PathBuf),
    /// An environment variable of the `hub serve` process.
    Env(String),
}

/// One `[[services]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The service's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Where its token is read from.
    pub token: TokenSource,
    /// Its scopes, as written (validated with [`hub_core::scopes::parse`]).
    pub scopes: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileApi {
    pub(crate) page_default_limit: Option<Spanned<i64>>,
    pub(crate) page_max_limit: Option<Spanned<i64>>,
    pub(crate) authenticate_metrics: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileService {
    pub(crate) name: Spanned<String>,
    pub(crate) api_token_file: Option<PathBuf>,
    pub(crate) api_token_env: Option<String>,
    pub(crate) api_token: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) scopes: Vec<Spanned<String>>,
}

/// Validates `[api]`.
pub(crate) fn parse(src: &Source<'_>, f: &FileApi) -> Result<ApiConfig, ConfigError> {
    // [api]
    let page = |key: &str, v: &Option<Spanned<i64>>, default: usize| -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) if (1..=10_000).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
            Some(n) => Err(src.err(key, n, "must be between 1 and 10000")),
        }
    };
    let page_max_limit = page("api.page_max_limit", &f.page_max_limit, 200)?;
    let page_default_limit = page("api.page_default_limit", &f.page_default_limit, 50)?;
    if page_default_limit > page_max_limit {
        let v = f.page_default_limit.as_ref().or(f.page_max_limit.as_ref()).expect("one was set");
        return Err(src.err(
            "api.page_default_limit",
            v,
            format!("is larger than api.page_max_limit ({page_max_limit})"),
        ));
    }
    Ok(ApiConfig { page_default_limit, page_max_limit, authenticate_metrics: f.authenticate_metrics.unwrap_or(true) })
}

/// Validates the `[[services]]` entries.
pub(crate) fn parse_services(src: &Source<'_>, entries: &[FileService]) -> Result<Vec<ServiceConfig>, ConfigError> {
    // [[services]]
    let mut services: Vec<ServiceConfig> = Vec::new();
    for sv in entries {
        let name = sv.name.get_ref();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(src.err("services.name", &sv.name, "must be 1-64 letters, digits, '-', '_' or '.'"));
        }
        if services.iter().any(|o| &o.name == name) {
            return Err(src.err("services.name", &sv.name, "is declared twice"));
        }
        if let Some(inline) = &sv.api_token {
            return Err(src.err(
                "services.api_token",
                inline,
                "is not allowed: a token must not sit in hub.toml; put it in a root-only file \
                 (api_token_file) or an environment variable (api_token_env)",
            ));
        }
        let token = match (&sv.api_token_file, &sv.api_token_env) {
            (Some(f), None) => TokenSource::File(f.clone()),
            (None, Some(e)) if !e.is_empty() => TokenSource::Env(e.clone()),
            _ => {
                return Err(src.err(
                    "services",
                    &sv.name,
                    format!("{name:?} needs exactly one of api_token_file or api_token_env"),
                ));
            }
        };
        let mut scopes = Vec::new();
        for sc in &sv.scopes {
            let r = hub_core::scopes::parse(sc.get_ref()).map_err(|e| src.err("services.scopes", sc, e))?;
            if r.name == "self" || r.name == "inherit" {
                return Err(src.err(
                    "services.scopes",
                    sc,
                    "names a user's own rights; a service has no user: list its scopes",
                ));
            }
            scopes.push(sc.get_ref().clone());
        }
        services.push(ServiceConfig { name: name.clone(), token, scopes });
    }
    Ok(services)
}
