//! Login sessions: a signed JWT in a cookie, backed by a row in the store.
//!
//! The cookie `hub-session` holds a JWT (RFC 7519) signed with HS256 whose claims are
//! `sub` (user name), `sid` (session id), `iat` and `exp` (unix seconds). A token is accepted
//! only if its signature and expiry are good *and* its `sid` is still in the store, so logout
//! (which deletes the row) revokes it even if someone copied the cookie. Known-good session ids
//! are cached in memory so the proxy's hot path does not touch the database.
//!
//! Under https the cookie is named `__Host-hub-session` (RFC 6265bis §4.1.3.2: `Secure`,
//! `Path=/`, no `Domain`, so a sibling host cannot plant or overwrite it). Signing keys rotate:
//! tokens are signed with the current key and accepted with it or any previous key (`[auth]
//! previous_jwt_secret_files`), until they expire. Hub forms carry an XSRF token,
//! HMAC-SHA256(key, "xsrf:" + session id), checked by [`Sessions::check_xsrf`].

use hub_core::Recover;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use hub_store::{SessionRecord, Store, StoreError};

/// Name of the session cookie over plain http.
pub const COOKIE_NAME: &str = "hub-session";

/// Name of the session cookie under https (with the `__Host-` prefix).
pub const SECURE_COOKIE_NAME: &str = "__Host-hub-session";

/// Most session ids kept in the in-memory cache before it is emptied and refilled on demand.
const CACHE_MAX: usize = 100_000;

/// The JWT claims of a session cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    /// User name.
    sub: String,
    /// Session id (the store's `sessions.id`).
    sid: String,
    /// Issued at, unix seconds.
    iat: i64,
    /// Expires at, unix seconds.
    exp: i64,
}

/// What [`Sessions::check_cookie_header`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCheck {
    /// No session cookie, or one that is malformed, forged, expired or revoked.
    NoSession,
    /// A live session of the user asked about.
    Owner,
    /// A live session of this other user.
    OtherUser(String),
}

/// An authenticated session: who, and which session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The logged-in user's name.
    pub username: String,
    /// The session id, for logout.
    pub id: String,
}

/// Issues, checks and revokes sessions.
pub struct Sessions {
    encoding: EncodingKey,
    /// The current key first, then previous keys.
    decoding: Vec<DecodingKey>,
    xsrf_key: Vec<u8>,
    store: Arc<dyn Store>,
    max_age_secs: i64,
    secure: bool,
    /// sid → (username, expires): sessions known to be in the store. Taken after `verified`
    /// when both are held (`answer_from_caches`), never before.
    cache: Mutex<HashMap<String, (String, i64)>>,
    /// Session JWTs whose signature already checked out → their claims, so the proxy's hot
    /// path does not decode and HMAC the same cookie on every request (that was ~9 % of the
    /// hub's CPU time when proxying small responses). Expiry and revocation are still checked
    /// on every request against the claims and `cache`.
    verified: Mutex<HashMap<String, Claims>>,
    /// Counts revocations; changed under the `cache` lock. A store lookup that started before a
    /// revocation does not put its (possibly deleted) session into the cache afterwards.
    revocations: std::sync::atomic::AtomicU64,
}

/// Errors loading the signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or created.
    #[error("JWT signing key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is readable by other users or too short.
    #[error("JWT signing key {path}: {problem}")]
    Unsafe {
        /// The key file.
        path: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// Reads the signing key from `path`, creating it (64 random bytes, hex, mode 0600,
/// `O_EXCL`) if it does not exist. A key file readable by group or others, or shorter than
/// 32 bytes, is refused.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io { path: path.display().to_string(), source };
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            let mut key = [0u8; 64];
            rand::fill(&mut key);
            f.write_all(hex::encode(key).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new JWT signing key");
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Unsafe {
            path: path.display().to_string(),
            problem: format!(
                "is readable by other users (mode {:o}); run `chmod 600 {}`",
                meta.permissions().mode() & 0o777,
                path.display()
            ),
        });
    }
    let key = std::fs::read(path).map_err(io)?;
    let key = key.trim_ascii().to_vec();
    if key.len() < 32 {
        return Err(KeyError::Unsafe {
            path: path.display().to_string(),
            problem: "is shorter than 32 bytes; delete it to have a new one generated".into(),
        });
    }
    Ok(key)
}

/// The value of cookie `name` in a `Cookie` request header (RFC 6265 §5.4 syntax), if present:
/// the first such cookie's, as a slice of `header` (nothing is copied).
pub fn token_from_cookie_header<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    cookie::Cookie::split_parse(header).filter_map(Result::ok).find(|c| c.name() == name).and_then(|c| c.value_raw())
}

/// Verifies a session JWT's signature (HS256 only, under any of `keys`) and expiry at `now`
/// (unix seconds); returns its claims as `(sub, sid)`. Tokens over 4 KiB are refused unparsed.
/// Whether the session is still live is the caller's business.
pub fn verify_claims(token: &str, keys: &[DecodingKey], now: i64) -> Option<(String, String)> {
    crate::jwt::install();
    verify_token(token, keys, now).map(|c| (c.sub, c.sid))
}

fn verify_token(token: &str, keys: &[DecodingKey], now: i64) -> Option<Claims> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.validate_exp = false; // checked below against the injected `now`
    v.set_required_spec_claims(&["exp", "sub"]);
    if token.len() > 4096 {
        tracing::debug!("session cookie refused: longer than 4096 bytes");
        return None;
    }
    let mut decoded = Err(None);
    for key in keys {
        match jsonwebtoken::decode::<Claims>(token, key, &v) {
            Ok(d) => {
                decoded = Ok(d.claims);
                break;
            }
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                decoded = Err(Some(e));
            }
            Err(e) => {
                decoded = Err(Some(e));
                break;
            }
        }
    }
    let claims = match decoded {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = ?e.map(|e| e.to_string()), "session cookie refused");
            return None;
        }
    };
    if claims.exp <= now {
        tracing::debug!(user = %claims.sub, "session cookie expired");
        return None;
    }
    Some(claims)
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The session row could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session token could not be signed (HS256 with the hub's key; this does not fail
    /// for a key the hub loaded).
    #[error("signing the session token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

impl Sessions {
    /// Sessions signed with `key` (and still accepted if signed with one of `previous`),
    /// lasting `max_age_secs`, with `Secure` `__Host-` cookies if `secure`.
    pub fn new(key: &[u8], previous: &[Vec<u8>], store: Arc<dyn Store>, max_age_secs: i64, secure: bool) -> Self {
        crate::jwt::install();
        let mut decoding = vec![DecodingKey::from_secret(key)];
        decoding.extend(previous.iter().map(|k| DecodingKey::from_secret(k)));
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding,
            xsrf_key: key.to_vec(),
            store,
            max_age_secs,
            secure,
            cache: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            revocations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Creates a session for `username` at `now` (unix seconds) and returns the `Set-Cookie`
    /// header value. The user must exist in the store.
    pub async fn create(&self, username: &str, now: i64) -> Result<(Session, String), CreateError> {
        let mut sid = [0u8; 16];
        rand::fill(&mut sid);
        let rec = SessionRecord {
            id: hex::encode(sid),
            username: username.to_string(),
            created: now,
            expires: now + self.max_age_secs,
        };
        self.store.create_session(&rec).await?;
        let claims = Claims { sub: rec.username.clone(), sid: rec.id.clone(), iat: now, exp: rec.expires };
        let jwt =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(CreateError::Sign)?;
        self.cache_put(&rec.id, &rec.username, rec.expires, self.revocations.load(std::sync::atomic::Ordering::SeqCst));
        let cookie = cookie::Cookie::build((self.cookie_name(), jwt))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(self.max_age_secs))
            .build();
        Ok((Session { username: rec.username, id: rec.id }, cookie.to_string()))
    }

    /// The session cookie's name: [`SECURE_COOKIE_NAME`] under https, else [`COOKIE_NAME`].
    pub fn cookie_name(&self) -> &'static str {
        if self.secure { SECURE_COOKIE_NAME } else { COOKIE_NAME }
    }

    /// The XSRF token for a session: lower-case hex HMAC-SHA256 of `"xsrf:" + sid` under the
    /// signing key (64 characters). Put in hub forms as `_xsrf`.
    pub fn xsrf_token(&self, session: &Session) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(&self.xsrf_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"xsrf:");
        mac.update(session.id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the session's XSRF token (constant-time comparison).
    pub fn check_xsrf(&self, session: &Session, token: &str) -> bool {
        let want = self.xsrf_token(session);
        want.len() == token.len() && want.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Revokes every session of `username` ("log out everywhere", a deleted user); returns
    /// how many. From the moment this returns no request is let in with any of them: the rows
    /// are deleted first, then the memory cache is purged, and a lookup that raced with the
    /// delete is not cached ([`Sessions::validate`]).
    pub async fn revoke_all(&self, username: &str) -> Result<u64, StoreError> {
        let n = self.store.delete_sessions_of(username).await;
        self.purge(|_, u| u == username);
        n
    }

    /// Removes cached sessions for which `gone(sid, user)` holds and marks a revocation.
    fn purge(&self, gone: impl Fn(&str, &str) -> bool) {
        let mut c = self.cache.lock().recover();
        self.revocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        c.retain(|sid, (u, _)| !gone(sid, u));
    }

    /// The `Set-Cookie` value that deletes the session cookie.
    pub fn clear_cookie(&self) -> String {
        cookie::Cookie::build((self.cookie_name(), ""))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(cookie::SameSite::Lax)
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }

    /// Finds the session cookie in a `Cookie` header value and checks it at `now`. Returns
    /// `None` for a missing, malformed, forged, expired or revoked token (the reason is logged
    /// at debug level).
    pub async fn from_cookie_header(&self, header: &str, now: i64) -> Option<Session> {
        let token = token_from_cookie_header(header, self.cookie_name())?;
        self.validate(token, now).await
    }

    /// The proxy's per-request check: whether the session cookie in `header` (a `Cookie`
    /// header value) is a live session of `name` at `now` (unix seconds). The same rules as
    /// [`Sessions::from_cookie_header`], but a session already verified and looked up is
    /// checked under the two cache locks without copying anything, so the common case (the
    /// owner's next request) allocates nothing.
    pub async fn check_cookie_header(&self, header: &str, now: i64, name: &str) -> SessionCheck {
        let Some(token) = token_from_cookie_header(header, self.cookie_name()) else {
            return SessionCheck::NoSession;
        };
        let known = self.answer_from_caches(token, now, |user, _| {
            if user == name { SessionCheck::Owner } else { SessionCheck::OtherUser(user.to_string()) }
        });
        match known {
            Some(Some(check)) => check,
            Some(None) => SessionCheck::NoSession,
            None => match self.validate_uncached(token, now).await {
                Some(s) if s.username == name => SessionCheck::Owner,
                Some(s) => SessionCheck::OtherUser(s.username),
                None => SessionCheck::NoSession,
            },
        }
    }

    /// The answer for `token` at `now` from the two caches alone, under their locks: `None`
    /// if they do not have it, `Some(None)` for an expired or revoked session, and
    /// `Some(Some(live(user, sid)))` for a live one. [`Sessions::validate`]'s rules, shared by
    /// both checks.
    fn answer_from_caches<R>(&self, token: &str, now: i64, live: impl FnOnce(&str, &str) -> R) -> Option<Option<R>> {
        let verified = self.verified.lock().recover();
        let claims = verified.get(token)?;
        if claims.exp <= now {
            tracing::debug!("session cookie expired");
            return Some(None);
        }
        let cache = self.cache.lock().recover();
        let (user, exp) = cache.get(&claims.sid)?;
        Some((*user == claims.sub && *exp > now).then(|| live(user, &claims.sid)))
    }

    /// Checks a session JWT at `now` (unix seconds).
    pub async fn validate(&self, token: &str, now: i64) -> Option<Session> {
        let cached = self
            .answer_from_caches(token, now, |user, sid| Session { username: user.to_string(), id: sid.to_string() });
        match cached {
            Some(answer) => answer,
            None => self.validate_uncached(token, now).await,
        }
    }

    /// [`Sessions::validate`] when the caches had no answer: verifies the token unless that
    /// was done, then looks the session up in the store and caches it.
    async fn validate_uncached(&self, token: &str, now: i64) -> Option<Session> {
        let known = self.verified.lock().recover().get(token).cloned();
        let claims = match known {
            Some(c) => c,
            None => {
                let c = verify_token(token, &self.decoding, now)?;
                let mut v = self.verified.lock().recover();
                if v.len() >= CACHE_MAX {
                    v.clear();
                }
                v.insert(token.to_string(), c.clone());
                c
            }
        };
        let epoch = self.revocations.load(std::sync::atomic::Ordering::SeqCst);
        match self.store.get_session(&claims.sid).await {
            Ok(Some(rec)) if rec.username == claims.sub && rec.expires > now => {
                self.cache_put(&rec.id, &rec.username, rec.expires, epoch);
                Some(Session { username: rec.username, id: rec.id })
            }
            Ok(_) => {
                tracing::debug!(user = %claims.sub, "session revoked or unknown");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                None
            }
        }
    }

    /// Revokes a session (logout).
    pub async fn revoke(&self, id: &str) -> Result<(), StoreError> {
        let r = self.store.delete_session(id).await;
        self.purge(|sid, _| sid == id);
        r
    }

    /// Caches a session found in the store, unless a revocation happened since `epoch` (the
    /// [`Self::revocations`] count read before the lookup).
    fn cache_put(&self, sid: &str, user: &str, exp: i64, epoch: u64) {
        let mut c = self.cache.lock().recover();
        if self.revocations.load(std::sync::atomic::Ordering::SeqCst) != epoch {
            return;
        }
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(sid.to_string(), (user.to_string(), exp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_store::sqlite::SqliteStore;

    async fn sessions(dir: &Path) -> Sessions {
        let url = format!("sqlite://{}/hub.sqlite", dir.display());
        let store = SqliteStore::open(&url, true).await.expect("open");
        store.migrate().await.expect("migrate");
        store.upsert_user("ann", false, 0).await.expect("user");
        let key = load_or_create_key(&dir.join("jwt.key")).expect("key");
        Sessions::new(&key, &[], Arc::new(store), 3600, true)
    }

    fn token_of(set_cookie: &str) -> String {
        cookie::Cookie::parse(set_cookie).expect("cookie").value().to_string()
    }

    #[test]
    fn key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        let a = load_or_create_key(&p).expect("create");
        let b = load_or_create_key(&p).expect("reload");
        assert_eq!(a, b);
        assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_or_create_key(&p).expect_err("world-readable key refused").to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[tokio::test]
    async fn cookie_flags_and_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = sessions(dir.path()).await;
        let (sess, set_cookie) = s.create("ann", 1000).await.expect("create");
        assert!(set_cookie.starts_with("__Host-hub-session="), "{set_cookie}");
        assert!(!set_cookie.contains("Domain"), "{set_cookie}");
        for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=3600"] {
            assert!(set_cookie.contains(flag), "{set_cookie} lacks {flag}");
        }
        let header = format!("other=1; {}", set_cookie.split(';').next().expect("pair"));
        assert_eq!(s.from_cookie_header(&header, 1001).await, Some(sess.clone()));
        // Expired at exp.
        assert_eq!(s.from_cookie_header(&header, 1000 + 3600).await, None);
        // Revoked.
        s.revoke(&sess.id).await.expect("revoke");
        assert_eq!(s.from_cookie_header(&header, 1001).await, None);
    }

    /// The proxy's check gives the same answers as `from_cookie_header` on its first call
    /// (verify and look up) and on later ones (the caches alone).
    #[tokio::test]
    async fn proxy_check_matches_full_validation_cold_and_cached() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = sessions(dir.path()).await;
        s.store.upsert_user("bob", false, 0).await.expect("user");
        let (ann, ann_cookie) = s.create("ann", 1000).await.expect("create");
        let ann_header = format!("_xsrf=x; {}", ann_cookie.split(';').next().expect("pair"));
        for round in ["cold", "cached"] {
            assert_eq!(s.check_cookie_header(&ann_header, 1001, "ann").await, SessionCheck::Owner, "{round}");
            assert_eq!(
                s.check_cookie_header(&ann_header, 1001, "bob").await,
                SessionCheck::OtherUser("ann".into()),
                "{round}"
            );
            assert_eq!(
                s.check_cookie_header(&ann_header, 1000 + 3600, "ann").await,
                SessionCheck::NoSession,
                "{round}"
            );
        }
        assert_eq!(s.check_cookie_header("_xsrf=x", 1001, "ann").await, SessionCheck::NoSession);
        assert_eq!(s.check_cookie_header("__Host-hub-session=junk", 1001, "ann").await, SessionCheck::NoSession);
        // Revoked after it was cached: refused at once.
        s.revoke(&ann.id).await.expect("revoke");
        assert_eq!(s.check_cookie_header(&ann_header, 1001, "ann").await, SessionCheck::NoSession);
    }

    #[tokio::test]
    async fn forged_and_foreign_tokens_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = sessions(dir.path()).await;
        let (_, set_cookie) = s.create("ann", 1000).await.expect("create");
        let token = token_of(&set_cookie);
        // Flip a character of the signature.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(s.validate(&String::from_utf8(forged).expect("utf8"), 1001).await, None);
        // Signed with another key.
        let other = tempfile::tempdir().expect("tmp");
        let s2 = sessions(other.path()).await;
        assert_eq!(s2.validate(&token, 1001).await, None);
        // An unsigned token ("alg": "none").
        let none = format!(
            "{}.{}.",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"{"alg":"none","typ":"JWT"}"#),
            token.split('.').nth(1).expect("payload")
        );
        assert_eq!(s.validate(&none, 1001).await, None);
        assert_eq!(s.validate("garbage", 1001).await, None);
    }

    #[tokio::test]
    async fn rotated_keys_still_accept_their_tokens() {
        let dir = tempfile::tempdir().expect("tmp");
        let old = sessions(dir.path()).await;
        let (sess, set_cookie) = old.create("ann", 1000).await.expect("create");
        let token = token_of(&set_cookie);
        let old_key = load_or_create_key(&dir.path().join("jwt.key")).expect("key");
        let new_key = load_or_create_key(&dir.path().join("jwt2.key")).expect("key");
        let store =
            SqliteStore::open(&format!("sqlite://{}/hub.sqlite", dir.path().display()), false).await.expect("db");
        let rotated = Sessions::new(&new_key, std::slice::from_ref(&old_key), Arc::new(store), 3600, true);
        assert_eq!(rotated.validate(&token, 1001).await, Some(sess.clone()), "old key still accepted");
        assert_eq!(rotated.validate(&token, 1000 + 3600).await, None, "until the token expires");
        let (s2, c2) = rotated.create("ann", 1000).await.expect("create");
        assert_eq!(old.validate(&token_of(&c2), 1001).await, None, "new tokens use the new key");
        // Log out everywhere.
        assert_eq!(rotated.revoke_all("ann").await.expect("revoke"), 2);
        assert_eq!(rotated.validate(&token_of(&c2), 1001).await, None);
        assert_eq!(rotated.validate(&token, 1001).await, None);
        let _ = s2;
    }

    #[tokio::test]
    async fn xsrf_tokens_are_per_session() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = sessions(dir.path()).await;
        let (a, _) = s.create("ann", 1000).await.expect("create");
        let (b, _) = s.create("ann", 1000).await.expect("create");
        let ta = s.xsrf_token(&a);
        assert_eq!(ta.len(), 64);
        assert!(s.check_xsrf(&a, &ta));
        assert!(!s.check_xsrf(&b, &ta), "another session's token is refused");
        assert!(!s.check_xsrf(&a, ""));
        assert!(!s.check_xsrf(&a, &ta[..63]));
    }

    #[tokio::test]
    async fn expired_and_altered_claims_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = sessions(dir.path()).await;
        let (_, set_cookie) = s.create("ann", 1000).await.expect("create");
        let token = token_of(&set_cookie);
        // Swap the payload for one naming another user, keeping the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"root","sid":"x","iat":1000,"exp":99999999999}"#,
        );
        parts[1] = &payload;
        assert_eq!(s.validate(&parts.join("."), 1001).await, None);
        // A huge cookie is refused before parsing.
        assert_eq!(s.validate(&"a".repeat(100_000), 1001).await, None);
    }
}
