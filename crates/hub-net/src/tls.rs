//! TLS between the hub and a server on another machine, pinned to the key that server made.
//!
//! A server started on a cluster node (the Slurm spawner) listens on the node's address, where
//! other users of the node, or of the network, could listen too. Its node agent
//! (`hub node-agent`) makes a new key and a self-signed certificate for this one server
//! ([`Identity::generate`]), reports the certificate's SHA-256 fingerprint ([`Pin`]) to the hub
//! over an authenticated call, and serves TLS 1.3 with it. The hub connects with
//! [`connect`], which accepts exactly that certificate: no certificate authority, no host
//! name, nothing else. A listener with any other key fails the handshake before the hub has
//! sent a byte of HTTP, so a server's token and traffic never reach it.
//!
//! Two ALPN protocols (RFC 7301) share the agent's port: [`ALPN_HTTP`] for the proxied
//! requests and WebSockets (the agent passes the bytes to the server's Unix socket) and
//! [`ALPN_CONTROL`] for the hub's own calls to the agent (delivering a renewed credential
//! cache).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use tokio::net::TcpStream;

/// ALPN for proxied HTTP/1.1 (and WebSocket upgrades) to the server behind the agent.
pub const ALPN_HTTP: &[u8] = b"http/1.1";
/// ALPN for the hub's calls to the node agent itself (HTTP/1.1 with the server's token).
pub const ALPN_CONTROL: &[u8] = b"x-hub-node-agent/1";
/// The name the hub puts in its ClientHello (SNI); the agent's certificate carries it. Not
/// checked: the pin is.
pub const SERVER_NAME: &str = "hub-node-agent";

/// SHA-256 of a server certificate's DER encoding (32 bytes), the value the hub pins.
pub type Pin = [u8; 32];

/// The fingerprint of `cert_der`.
pub fn fingerprint(cert_der: &[u8]) -> Pin {
    sha2::Sha256::digest(cert_der).into()
}

/// Ring, the one crypto provider this crate builds with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node agent's key and self-signed certificate, made for one server.
pub struct Identity {
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity(sha256:{})", hex_pin(&self.pin()))
    }
}

impl Identity {
    /// A new ECDSA P-256 key and a self-signed certificate for [`SERVER_NAME`]. The key exists
    /// only in this process's memory.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let c = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
        Ok(Identity { cert_der: c.cert.der().to_vec(), key_der: c.signing_key.serialize_der() })
    }

    /// The certificate's fingerprint, which the hub pins.
    pub fn pin(&self) -> Pin {
        fingerprint(&self.cert_der)
    }

    /// A TLS 1.3 server configuration with this identity, offering [`ALPN_HTTP`] and
    /// [`ALPN_CONTROL`], asking no client certificate (the hub proves itself with the server's
    /// token inside the channel).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut c = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )?;
        c.alpn_protocols = vec![ALPN_HTTP.to_vec(), ALPN_CONTROL.to_vec()];
        Ok(Arc::new(c))
    }
}

/// `pin` as 64 lowercase hex digits (how it is stored and reported).
pub fn hex_pin(pin: &Pin) -> String {
    pin.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits back into a [`Pin`]; `None` for anything else.
pub fn parse_pin(s: &str) -> Option<Pin> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut pin = [0u8; 32];
    for (i, out) in pin.iter_mut().enumerate() {
        *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(pin)
}

/// Accepts exactly the certificate whose fingerprint is `pin`, and checks the handshake's
/// signatures with it (so the peer holds the key, not just a copy of the certificate).
#[derive(Debug)]
struct PinVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered (`client_config`).
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Client configurations by (pin, ALPN), kept so that reconnecting to the same server resumes
/// its TLS session (rustls's in-memory session cache lives in the configuration).
static CONFIGS: Mutex<Option<ConfigCache>> = Mutex::new(None);

/// Client configurations by (pin, ALPN protocol).
type ConfigCache = HashMap<(Pin, &'static [u8]), Arc<rustls::ClientConfig>>;

/// Most client configurations kept; when full, the cache starts over (servers come and go;
/// the next connection to each makes its configuration again).
const MAX_CONFIGS: usize = 4096;

fn client_config(pin: &Pin, alpn: &'static [u8]) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut guard = CONFIGS.lock().unwrap_or_else(|e| e.into_inner());
    let configs = guard.get_or_insert_with(HashMap::new);
    if let Some(c) = configs.get(&(*pin, alpn)) {
        return Ok(c.clone());
    }
    let provider = provider();
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier { pin: *pin, provider }))
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    let c = Arc::new(c);
    if configs.len() >= MAX_CONFIGS {
        configs.clear();
    }
    configs.insert((*pin, alpn), c.clone());
    Ok(c)
}

/// Why a pinned connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No TCP connection (nothing listens, or the node is unreachable).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Something answered with another certificate (or no TLS at all): not the server the hub
    /// started. Nothing was sent to it but a ClientHello.
    #[error("the listener at {addr} is not the server the hub started (its TLS key is not the pinned one: {why})")]
    NotPinned {
        /// Where.
        addr: SocketAddr,
        /// The TLS error.
        why: String,
    },
}

/// A TLS 1.3 connection to `addr` (TCP_NODELAY on) that succeeds only if the peer proves it
/// holds the key of the certificate with fingerprint `pin`, negotiating `alpn`
/// ([`ALPN_HTTP`] or [`ALPN_CONTROL`]).
pub async fn connect(
    addr: SocketAddr,
    pin: &Pin,
    alpn: &'static [u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
    let tcp = TcpStream::connect(addr).await.map_err(|source| TlsError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let config = client_config(pin, alpn).map_err(|e| TlsError::NotPinned { addr, why: e.to_string() })?;
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| TlsError::NotPinned { addr, why: e.to_string() })?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| TlsError::NotPinned { addr, why: e.to_string() })?;
    if tls.get_ref().1.alpn_protocol() != Some(alpn) {
        return Err(TlsError::NotPinned { addr, why: "the server did not agree to the protocol (ALPN)".into() });
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS server with `id` on a loopback port; each connection's decrypted bytes (until
    /// EOF or an error) are sent on the channel.
    async fn server(id: &Identity) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let acceptor = tokio_rustls::TlsAcceptor::from(id.server_config().expect("config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = tls.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            got.extend_from_slice(&buf[..n]);
                            let _ = tls.write_all(b"pong").await;
                        }
                    }
                    let _ = tx.send(got);
                });
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn only_the_pinned_key_is_accepted_and_nothing_reaches_another() {
        let (ours, theirs) = (Identity::generate().expect("key"), Identity::generate().expect("key"));
        assert_ne!(ours.pin(), theirs.pin());
        let (addr, mut got) = server(&ours).await;
        let mut tls = connect(addr, &ours.pin(), ALPN_HTTP).await.expect("the pinned server");
        tls.write_all(b"ping").await.expect("write");
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await.expect("read");
        assert_eq!(&pong, b"pong");
        drop(tls);
        assert_eq!(got.recv().await.expect("bytes"), b"ping");

        // An impostor: the same address and protocol, another key. The hub's side fails the
        // handshake, and the impostor receives no application byte.
        let (addr2, mut got2) = server(&theirs).await;
        match connect(addr2, &ours.pin(), ALPN_HTTP).await {
            Err(TlsError::NotPinned { why, .. }) => assert!(why.contains("certificate"), "{why}"),
            other => panic!("an impostor was accepted: {:?}", other.map(|_| ())),
        }
        assert!(got2.recv().await.expect("connection ended").is_empty(), "the impostor got bytes");

        // Nothing listening.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        assert!(matches!(connect(closed, &ours.pin(), ALPN_HTTP).await, Err(TlsError::Connect { .. })));
    }

    #[tokio::test]
    async fn both_protocols_are_offered_and_an_unknown_one_is_refused() {
        let id = Identity::generate().expect("key");
        let (addr, _got) = server(&id).await;
        let tls = connect(addr, &id.pin(), ALPN_CONTROL).await.expect("control");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_CONTROL));
        assert!(connect(addr, &id.pin(), b"h2").await.is_err(), "h2 is not offered");
    }

    #[test]
    fn pins_round_trip_as_hex() {
        let pin = fingerprint(b"certificate");
        let hex = hex_pin(&pin);
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_pin(&hex), Some(pin));
        assert_eq!(parse_pin(&hex[..63]), None);
        assert_eq!(parse_pin(&format!("{}zz", &hex[..62])), None);
    }
}
