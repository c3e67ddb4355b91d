//! The node agent's protocol: how a server on a cluster node (`hub node-agent`, run as the user
//! inside the job) tells the hub where it listens, and how the hub hands it the user's
//! renewed credential cache.
//!
//! **Report** (agent → hub): `POST <hub_url>/hub/api/spawner/report` with a JSON [`Report`] and
//! `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 (RFC 2104) of the exact body bytes
//! under the 32-byte secret the hub put in that job's script (the scheme GitHub's webhooks
//! use). The secret never travels; a report carries nothing secret (a port and a certificate
//! fingerprint), so plain HTTP is enough, and a forged or altered report fails the check.
//!
//! **Control** (hub → agent): HTTP/1.1 inside the pinned TLS channel (`crate::tls`, ALPN
//! [`crate::tls::ALPN_CONTROL`]), authenticated with the server's token
//! (`Authorization: token <T>`): `PUT /ccache` with the ccache's bytes (at most
//! [`MAX_CCACHE_BYTES`]) replaces the node's copy; `DELETE /ccache` removes it. `204` on
//! success.

use std::time::Duration;

use axum::body::Body;
use hmac::{Hmac, Mac};
use hub_core::{RemoteEndpoint, ServerToken};
use sha2::Sha256;

/// The header that carries a report's signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The hub's path for reports.
pub const REPORT_PATH: &str = "/hub/api/spawner/report";
/// The control path for the credential cache.
pub const CCACHE_PATH: &str = "/ccache";
/// Largest credential cache the agent accepts (bytes), as the hub's renewer reads at most.
pub const MAX_CCACHE_BYTES: usize = 1024 * 1024;
/// The environment variable that carries the report secret (64 hex digits) into the agent,
/// which removes it from its environment before starting the server.
pub const SECRET_ENV: &str = "HUB_AGENT_SECRET";
/// The environment variable that carries the server's `[[kernelspec]]`s into the agent: a
/// JSON object of kernelspec name to `kernel.json` content (Jupyter's kernelspec format), as
/// the hub wrote them on its own disk. The agent writes them into its private directory on the
/// node and points the server's `JUPYTER_PATH` there.
pub const KERNELSPECS_ENV: &str = "HUB_KERNELSPECS";

/// The version of this protocol (the report and the control calls). A hub takes reports of
/// its own version only: the nodes must run the hub's own build (`[spawner.slurm] agent`).
pub const PROTOCOL: u32 = 1;

/// Where a node agent's server listens, as reported to the hub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The agent's [`PROTOCOL`].
    pub protocol: u32,
    /// The server's unit (`<user>` or `<user>@<server_name>`), as the hub named the job.
    pub server: String,
    /// The scheduler's job id (Slurm's `SLURM_JOB_ID`).
    pub job_id: String,
    /// The TCP port the agent's TLS listener has on the node.
    pub port: u16,
    /// SHA-256 of the agent's certificate, 64 hex digits (`crate::tls::hex_pin`).
    pub pin: String,
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("sha256={}", tag.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Whether `signature` (the header's value) is `body`'s under `secret`, compared in constant
/// time.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else { return false };
    if hex.len() != 64 {
        return false;
    }
    let mut tag = [0u8; 32];
    for (i, out) in tag.iter_mut().enumerate() {
        match u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16) {
            Ok(b) => *out = b,
            Err(_) => return false,
        }
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Sends one control request (`method` on [`CCACHE_PATH`] with `body`) to the agent at
/// `remote` over the pinned channel, with the server's token, within `timeout`. Errors are
/// messages for the log.
pub async fn control(
    remote: &RemoteEndpoint,
    token: &ServerToken,
    method: hyper::Method,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let ask = async {
        let tls =
            crate::tls::connect(remote.addr, &remote.pin, crate::tls::ALPN_CONTROL).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("control connection to {}: {e}", remote.addr))?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(CCACHE_PATH)
            .header(hyper::header::HOST, crate::tls::SERVER_NAME)
            .header(hyper::header::AUTHORIZATION, token.authorization().clone())
            .header(hyper::header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| format!("control request to {}: {e}", remote.addr))?;
        if resp.status() == hyper::StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(format!("the node agent on {} answered {}", remote.node, resp.status()))
        }
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(r) => r,
        Err(_) => Err(format!("the node agent on {} did not answer within {timeout:?}", remote.node)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_only_for_the_same_secret_and_body() {
        let (secret, body) = ([7u8; 32], br#"{"server":"ann","job_id":"12","port":4242,"pin":"00"}"#);
        let sig = sign(&secret, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(&secret, body, &sig));
        assert!(!verify(&[8u8; 32], body, &sig), "another secret");
        let mut altered = body.to_vec();
        altered[40] ^= 1;
        assert!(!verify(&secret, &altered, &sig), "an altered body");
        assert!(!verify(&secret, body, &sig[7..]), "no scheme");
        assert!(!verify(&secret, body, "sha256=zz"), "garbage");
        assert!(!verify(&secret, body, &format!("{}0", &sig)), "too long");
    }

    #[test]
    fn reports_refuse_unknown_fields() {
        let ok: Report =
            serde_json::from_str(r#"{"protocol":1,"server":"ann","job_id":"12","port":4242,"pin":"ab"}"#).expect("ok");
        assert_eq!((ok.protocol, ok.port), (1, 4242));
        for bad in [
            r#"{"protocol":1,"server":"ann","job_id":"12","port":4242,"pin":"ab","host":"evil"}"#,
            r#"{"protocol":1,"server":"ann","job_id":"12","port":70000,"pin":"ab"}"#,
            // An agent older than the protocol version.
            r#"{"server":"ann","job_id":"12","port":4242,"pin":"ab"}"#,
        ] {
            assert!(serde_json::from_str::<Report>(bad).is_err(), "{bad}");
        }
    }
}
