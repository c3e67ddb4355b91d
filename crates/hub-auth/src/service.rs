//! Service tokens: `[[services]]` entries of hub.toml, with their tokens read once at start
//! from a root-only file or an environment variable and kept only as SHA-256 hashes.

use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hub_config::{ServiceConfig, TokenSource};
use hub_core::scopes::{self, Requested};

/// A service whose token has been read.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    /// The service's name.
    pub name: String,
    hash: [u8; 32],
    scopes: Vec<Requested>,
}

impl ServiceToken {
    /// Whether `digest` (the SHA-256 of a presented token) is this service's, compared in
    /// constant time.
    pub fn matches(&self, digest: &[u8; 32]) -> bool {
        bool::from(self.hash.ct_eq(digest))
    }

    /// The scopes configured for the service.
    pub fn scopes(&self) -> &[Requested] {
        &self.scopes
    }
}

/// A service whose token cannot be used; the text names the service and the fix.
#[derive(Debug, thiserror::Error)]
#[error("[[services]] {service}: {problem}")]
pub struct ServiceTokenError {
    /// The service's name.
    pub service: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn problem(service: &str, problem: String) -> ServiceTokenError {
    ServiceTokenError { service: service.to_string(), problem }
}

/// Reads each service's token. Errors name the service and the fix: a missing or empty
/// token, a token file not owned by root or readable by group or others, a token shorter than
/// 32 characters, a scope the hub does not know.
pub fn load_services(services: &[ServiceConfig]) -> Result<Vec<ServiceToken>, ServiceTokenError> {
    let mut out = Vec::new();
    for s in services {
        let token = match &s.token {
            TokenSource::File(path) => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| problem(&s.name, format!("cannot read api_token_file {}: {e}", path.display())))?;
                if meta.uid() != 0 {
                    return Err(problem(
                        &s.name,
                        format!(
                            "api_token_file {} is owned by uid {}, not root; run `chown root {}` (its owner could change the token)",
                            path.display(),
                            meta.uid(),
                            path.display()
                        ),
                    ));
                }
                if meta.mode() & 0o077 != 0 {
                    return Err(problem(
                        &s.name,
                        format!(
                            "api_token_file {} is readable by others (mode {:o}); chmod 600 it",
                            path.display(),
                            meta.mode() & 0o777
                        ),
                    ));
                }
                std::fs::read_to_string(path)
                    .map_err(|e| problem(&s.name, format!("cannot read {}: {e}", path.display())))?
            }
            TokenSource::Env(var) => std::env::var(var)
                .map_err(|_| problem(&s.name, format!("the environment variable {var} (api_token_env) is not set")))?,
        };
        let token = token.trim();
        if token.len() < 32 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(problem(
                &s.name,
                "the token must be at least 32 characters with no spaces; generate one with `openssl rand -hex 32`"
                    .into(),
            ));
        }
        let scopes = scopes::parse_all(&s.scopes).map_err(|e| problem(&s.name, e.to_string()))?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        out.push(ServiceToken { name: s.name.clone(), hash, scopes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_tokens_must_be_private_and_long() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t");
        std::fs::write(&path, format!("{}\n", "x".repeat(40))).expect("write");
        let svc = |scopes: &[&str]| ServiceConfig {
            name: "culler".into(),
            token: TokenSource::File(path.clone()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_services(&[svc(&["list:users"])]).expect_err("world-readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let loaded = load_services(&[svc(&["list:users"])]).expect("private file");
        assert_eq!(loaded[0].name, "culler");
        // Private but not root's: its owner could change the token.
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown (tests run as root)");
        let e = load_services(&[svc(&["list:users"])]).expect_err("not root's");
        assert!(e.to_string().contains("not root") && e.to_string().contains("chown root"), "{e}");
        std::os::unix::fs::chown(&path, Some(0), None).expect("chown back");
        std::fs::write(&path, "short").expect("write");
        assert!(load_services(&[svc(&[])]).expect_err("short").to_string().contains("at least 32"));
        let env = ServiceConfig {
            name: "e".into(),
            token: TokenSource::Env("HUB_TEST_UNSET_TOKEN_VAR".into()),
            scopes: vec![],
        };
        assert!(load_services(&[env]).expect_err("unset").to_string().contains("is not set"));
    }
}
