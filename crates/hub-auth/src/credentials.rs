//! Kerberos credentials a login produced, and the GSS-API error type.

use std::path::Path;

use libgssapi::credential::{Cred, CredUsage};
use libgssapi::oid::GSS_MECH_KRB5;

/// Credentials obtained at login (a TGT from a password login, or a client's delegated
/// credentials from SPNEGO), which can be written to a credential cache file.
#[derive(Clone)]
pub struct LoginCredentials(pub(crate) Cred);

impl std::fmt::Debug for LoginCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginCredentials(..)")
    }
}

impl LoginCredentials {
    /// Writes the credentials to a new FILE credential cache at `path` (blocking; GSS-API
    /// `gss_store_cred_into`). The caller fixes owner and mode and renames it into place.
    pub fn store(&self, path: &Path) -> Result<(), GssError> {
        let mechs = GSS_MECH_KRB5;
        self.0.store_into(&format!("FILE:{}", path.display()), true, true, CredUsage::Initiate, Some(mechs)).map_err(
            |source| GssError::Gss { context: format!("storing the credentials in {}", path.display()), source },
        )
    }
}

/// A GSS-API step that failed, or a value it gave that the hub cannot use.
#[derive(Debug, thiserror::Error)]
pub enum GssError {
    /// A GSS-API call failed; `context` says which and for what.
    #[error("{context}: {source}")]
    Gss {
        /// What the hub was doing.
        context: String,
        /// The GSS-API major and minor status.
        source: libgssapi::error::Error,
    },
    /// The exchange ended without an answer, or gave something unusable.
    #[error("{0}")]
    Invalid(String),
}
