//! The one JWT algorithm the hub uses, HS256 (RFC 7518 §3.2: HMAC with SHA-256), as
//! `jsonwebtoken`'s crypto provider.
//!
//! `jsonwebtoken` leaves its cryptography to a [`CryptoProvider`]: its `rust_crypto` feature
//! brings one for every algorithm, and with it the `rsa` crate and its open timing advisory
//! (RUSTSEC-2023-0071, the Marvin attack) although the hub never uses RSA. This provider
//! knows HS256 only, on the `hmac` and `sha2` crates; any other algorithm is an
//! `InvalidAlgorithm` error (the session code also pins HS256 in its `Validation`). It is
//! installed once per process by [`install`], which [`crate::session::Sessions::new`] calls.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;

/// HMAC-SHA256 keyed with a session key.
struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(key: &[u8]) -> Result<Self, Error> {
        Hmac::<Sha256>::new_from_slice(key).map(Hs256).map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant-time comparison (hmac's verify_slice).
        mac.verify_slice(sig).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match alg {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.as_bytes())?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match alg {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_as_bytes()?)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// HS256 only; no JWK support (the hub publishes no keys).
static PROVIDER: CryptoProvider =
    CryptoProvider { signer_factory: signer, verifier_factory: verifier, key_utils: KeyUtils::new_unimplemented() };

/// Installs the HS256 provider for this process (once; later calls do nothing).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_hs256_and_refuses_other_algorithms() {
        install();
        let key = b"0123456789abcdef0123456789abcdef";
        let claims = serde_json::json!({"sub": "ann", "exp": 4_000_000_000u64});
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key))
                .expect("sign");
        let v = jsonwebtoken::Validation::new(Algorithm::HS256);
        let ok = jsonwebtoken::decode::<serde_json::Value>(&token, &DecodingKey::from_secret(key), &v);
        assert_eq!(ok.expect("verify").claims["sub"], "ann");
        let wrong = jsonwebtoken::decode::<serde_json::Value>(&token, &DecodingKey::from_secret(b"another key"), &v);
        assert!(matches!(wrong.map_err(|e| e.into_kind()), Err(ErrorKind::InvalidSignature)));
        let hs512 =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS512), &claims, &EncodingKey::from_secret(key));
        assert!(matches!(hs512.map_err(|e| e.into_kind()), Err(ErrorKind::InvalidAlgorithm)));
    }
}
