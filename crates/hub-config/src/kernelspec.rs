//! `[[kernelspec]]`: kernel.json files the hub writes for every user's server.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};
use crate::template::Template;

/// A `[[kernelspec]]` entry: a kernel.json the hub writes for each user's server
/// (Jupyter kernelspec format, <https://jupyter-client.readthedocs.io/en/stable/kernels.html>).
#[derive(Clone, Debug)]
pub struct KernelSpecConfig {
    /// Directory name of the kernelspec (`name`): letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Name shown in JupyterLab's launcher (`display_name`).
    pub display_name: String,
    /// Language (`language`), e.g. `python`.
    pub language: String,
    /// Command line (`argv`); templates, plus Jupyter's own `{connection_file}` and
    /// `{resource_dir}`, which are passed through.
    pub argv: Vec<Template>,
    /// Environment (`env`); templates.
    pub env: BTreeMap<String, Template>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKernelSpec {
    pub(crate) name: Spanned<String>,
    pub(crate) display_name: Option<String>,
    #[serde(default = "default_language")]
    pub(crate) language: String,
    pub(crate) argv: Spanned<Vec<String>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<String, Spanned<String>>,
}

pub(crate) fn default_language() -> String {
    "python".into()
}

/// Whether `name` can be a kernelspec's directory name: 1-64 ASCII letters, digits, `.`, `_`
/// or `-`, not starting with `.` (jupyter_client's kernel name rule, without its leniency for
/// other Unicode letters; never a path).
pub fn is_kernel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.starts_with('.')
}

/// Validates the `[[kernelspec]]` entries.
pub(crate) fn parse(src: &Source<'_>, specs: &[FileKernelSpec]) -> Result<Vec<KernelSpecConfig>, ConfigError> {
    // [[kernelspec]]
    let ks_vars = ["username", "uid", "realm", "principal", "ccache", "keytab", "connection_file", "resource_dir"];
    let mut kernelspecs = Vec::new();
    for ks in specs {
        let name = ks.name.get_ref();
        if !is_kernel_name(name) {
            return Err(src.err("kernelspec.name", &ks.name, "must be 1-64 letters, digits, '.', '_' or '-'"));
        }
        if kernelspecs.iter().any(|k: &KernelSpecConfig| k.name == *name) {
            return Err(src.err("kernelspec.name", &ks.name, format!("{name:?} is declared twice")));
        }
        if ks.argv.get_ref().is_empty() {
            return Err(src.err("kernelspec.argv", &ks.argv, "must name the kernel's program"));
        }
        let argv = ks
            .argv
            .get_ref()
            .iter()
            .map(|a| Template::parse(a, &ks_vars).map_err(|e| src.err("kernelspec.argv", &ks.argv, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = BTreeMap::new();
        for (key, v) in &ks.env {
            env.insert(key.clone(), src.template(&format!("kernelspec.env.{key}"), v, &ks_vars)?);
        }
        kernelspecs.push(KernelSpecConfig {
            name: name.clone(),
            display_name: ks.display_name.clone().unwrap_or_else(|| name.clone()),
            language: ks.language.clone(),
            argv,
            env,
        });
    }
    Ok(kernelspecs)
}
