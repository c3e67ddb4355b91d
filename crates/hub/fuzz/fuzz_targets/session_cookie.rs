//! Cookie headers and session tokens from hostile input: parsing never panics, and a token is
//! accepted only if it is an HS256 JWT signed with the key (the fuzzer cannot forge one, so any
//! acceptance of input it made up, other than the one valid token it may splice in, is a bug).
#![no_main]

use hub::session::{token_from_cookie_header, verify_claims};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-key-fuzz-key-fuzz-key-fuzz-key-0123456789";

fuzz_target!(|data: &[u8]| {
    hub::jwt::install();
    let Ok(header) = std::str::from_utf8(data) else { return };
    let keys = [DecodingKey::from_secret(KEY)];
    let valid = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"sub": "ann", "sid": "s1", "iat": 0, "exp": 2_000}),
        &EncodingKey::from_secret(KEY),
    )
    .expect("sign");
    for name in ["hub-session", "__Host-hub-session"] {
        if let Some(token) = token_from_cookie_header(header, name) {
            if let Some((sub, sid)) = verify_claims(&token, &keys, 1_000) {
                assert!(token == valid || token.trim() == valid, "forged token accepted: {token:?}");
                assert_eq!((sub.as_str(), sid.as_str()), ("ann", "s1"));
            }
        }
    }
    let _ = verify_claims(header, &keys, 1_000);
});
