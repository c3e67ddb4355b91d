//! Finding a kernelspec by name, as jupyter_client does
//! (<https://jupyter-client.readthedocs.io/en/stable/kernels.html#kernel-specs>): the
//! `kernels/<name>/kernel.json` in the first Jupyter data directory that has one, in the order
//! `JUPYTER_PATH` (where the hub puts its `[[kernelspec]]` entries), the user's data directory
//! (`JUPYTER_DATA_DIR` or `~/.local/share/jupyter`), the Jupyter environment's
//! `share/jupyter`, then `/usr/local/share/jupyter` and `/usr/share/jupyter`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How the kernel wants to be interrupted (`interrupt_mode` in kernel.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InterruptMode {
    /// SIGINT to the kernel's process group (the default).
    #[default]
    Signal,
    /// An `interrupt_request` on the control channel.
    Message,
}

/// A kernelspec, ready to start.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSpec {
    /// Its name (the directory's name).
    pub name: String,
    /// The directory holding kernel.json (`{resource_dir}`).
    pub resource_dir: PathBuf,
    /// The command line, with `{connection_file}` and `{resource_dir}` still in it.
    pub argv: Vec<String>,
    /// Extra environment for the kernel.
    pub env: BTreeMap<String, String>,
    /// Its language (`python`, `R`, ...), for the parameters' syntax.
    pub language: String,
    /// The name shown to people.
    pub display_name: String,
    /// How to interrupt it.
    pub interrupt_mode: InterruptMode,
}

#[derive(Deserialize)]
struct KernelJson {
    argv: Vec<String>,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    interrupt_mode: InterruptMode,
}

/// No kernelspec of that name, or a broken one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KernelSpecError {
    /// No directory has it.
    #[error("no kernel named {name:?}; the kernels you have are: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every name found, sorted.
        available: Vec<String>,
    },
    /// Its kernel.json cannot be used.
    #[error("the kernelspec {path} cannot be used: {reason}")]
    Invalid {
        /// The kernel.json.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The Jupyter data directories to search, in order (see the module documentation), for a
/// process whose environment is `env` (looked up by name), under `home`, with Jupyter
/// installed in `prefix`.
pub fn data_dirs(env: &dyn Fn(&str) -> Option<String>, home: &Path, prefix: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(jp) = env("JUPYTER_PATH") {
        dirs.extend(jp.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    dirs.push(env("JUPYTER_DATA_DIR").map_or_else(|| home.join(".local/share/jupyter"), PathBuf::from));
    if let Some(p) = prefix {
        dirs.push(p.join("share/jupyter"));
    }
    dirs.push("/usr/local/share/jupyter".into());
    dirs.push("/usr/share/jupyter".into());
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// Every kernelspec name in `dirs`, sorted, each once.
pub fn names(dirs: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join("kernels")).ok())
        .flat_map(|rd| rd.flatten())
        .filter(|e| e.path().join("kernel.json").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The kernelspec `name` from the first of `dirs` that has it. A program named `python` or
/// `python3` becomes `<prefix>/bin/python` when `prefix` has one (jupyter_client runs the
/// native kernel with its own `sys.executable` the same way).
pub fn find(name: &str, dirs: &[PathBuf], prefix: Option<&Path>) -> Result<KernelSpec, KernelSpecError> {
    let valid_name = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
    let found =
        dirs.iter().map(|d| d.join("kernels").join(name)).find(|d| valid_name && d.join("kernel.json").is_file());
    let Some(dir) = found else {
        return Err(KernelSpecError::Unknown { name: name.to_string(), available: names(dirs) });
    };
    let path = dir.join("kernel.json");
    let invalid = |reason: String| KernelSpecError::Invalid { path: path.display().to_string(), reason };
    let bytes = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
    let k: KernelJson = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let mut argv = k.argv;
    let Some(program) = argv.first_mut() else { return Err(invalid("\"argv\" is empty".into())) };
    if matches!(program.as_str(), "python" | "python3")
        && let Some(py) = prefix.map(|p| p.join("bin/python")).filter(|p| p.exists())
    {
        *program = py.display().to_string();
    }
    Ok(KernelSpec {
        name: name.to_string(),
        resource_dir: dir,
        argv,
        env: k.env,
        language: if k.language.is_empty() { "python".into() } else { k.language },
        display_name: k.display_name,
        interrupt_mode: k.interrupt_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, data: &str, name: &str, json: &str) {
        let d = dir.join(data).join("kernels").join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("kernel.json"), json).expect("write");
    }

    #[test]
    fn search_order_and_unknown_names() {
        let t = tempfile::tempdir().expect("tempdir");
        let (a, b, prefix) = (t.path().join("a"), t.path().join("b"), t.path().join("venv"));
        spec(
            t.path(),
            "a",
            "spark",
            r#"{"argv": ["spark-kernel", "{connection_file}"], "language": "python", "interrupt_mode": "message"}"#,
        );
        spec(t.path(), "b", "spark", r#"{"argv": ["other"]}"#);
        spec(
            t.path(),
            "venv/share/jupyter",
            "python3",
            r#"{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "Python 3", "language": "python"}"#,
        );
        std::fs::create_dir_all(prefix.join("bin")).expect("bin");
        std::fs::write(prefix.join("bin/python"), "").expect("python");
        let jp = format!("{}:{}", a.display(), b.display());
        let env = move |k: &str| (k == "JUPYTER_PATH").then(|| jp.clone());
        let dirs = data_dirs(&env, &t.path().join("home"), Some(&prefix));
        assert_eq!(dirs[0], a);
        assert_eq!(dirs[2], t.path().join("home/.local/share/jupyter"));
        let k = find("spark", &dirs, Some(&prefix)).expect("spark");
        assert_eq!(k.argv[0], "spark-kernel", "the first directory wins");
        assert_eq!(k.interrupt_mode, InterruptMode::Message);
        let py = find("python3", &dirs, Some(&prefix)).expect("python3");
        assert_eq!(py.argv[0], prefix.join("bin/python").display().to_string());
        assert_eq!(py.interrupt_mode, InterruptMode::Signal);
        let e = find("julia", &dirs, Some(&prefix)).expect_err("unknown");
        assert_eq!(e.to_string(), "no kernel named \"julia\"; the kernels you have are: python3, spark");
        assert!(matches!(find("../a", &dirs, None), Err(KernelSpecError::Unknown { .. })));
        spec(t.path(), "a", "empty", r#"{"argv": []}"#);
        assert!(find("empty", &dirs, None).expect_err("empty argv").to_string().contains("\"argv\" is empty"));
    }
}
