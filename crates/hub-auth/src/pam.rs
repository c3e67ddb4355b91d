//! PAM authenticator: checks a password with the configured PAM service
//! (`[auth] pam_service`), then PAM's account management (expired or locked accounts).

use async_trait::async_trait;
use pam_client2::conv_mock::Conversation;
use pam_client2::{Context, Flag};

use crate::{AuthError, Authenticated, Authenticator};

/// Authenticates against Linux PAM. Needs root to check other users' passwords (pam_unix
/// reads `/etc/shadow`). Each call runs on tokio's blocking pool: PAM modules block (and
/// pam_unix sleeps ~2 s after a failure unless the service says `nodelay`).
pub struct PamAuthenticator {
    service: String,
}

impl PamAuthenticator {
    /// An authenticator for the PAM service `service` (a file under `/etc/pam.d/`).
    pub fn new(service: &str) -> Self {
        Self { service: service.to_string() }
    }
}

#[async_trait]
impl Authenticator for PamAuthenticator {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Authenticated, AuthError> {
        let service = self.service.clone();
        let user = username.to_string();
        let pass = password.to_string();
        tokio::task::spawn_blocking(move || {
            let conv = Conversation::with_credentials(user.clone(), pass);
            let mut ctx = Context::new(&service, Some(&user), conv)
                .map_err(|e| AuthError::Internal(format!("PAM service {service:?} could not start: {e}")))?;
            ctx.authenticate(Flag::DISALLOW_NULL_AUTHTOK)
                .map_err(|e| AuthError::Rejected(format!("PAM ({service}) refused the password for {user:?}: {e}")))?;
            ctx.acct_mgmt(Flag::DISALLOW_NULL_AUTHTOK)
                .map_err(|e| AuthError::Rejected(format!("PAM ({service}) refused the account {user:?}: {e}")))?;
            Ok(Authenticated { username: user, credentials: None })
        })
        .await
        .map_err(|e| AuthError::Internal(format!("PAM task failed: {e}")))?
    }
}
