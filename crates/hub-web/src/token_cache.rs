//! Users' API tokens recently found in the store, by the SHA-256 digest of the token, so the
//! proxy's hot path with a token (and the API's) does not touch the database on every request.
//!
//! The discipline is the session cache's (`hub_auth::session`): an answer from the store is
//! reused for at most [`FRESH_FOR`] seconds, a token's expiry is checked on every use, and
//! revoking a token, deleting a user or changing an admin flag empties the cache
//! ([`TokenCache::revoke_all`]), with an epoch so that a store lookup that raced with the
//! revocation is not cached afterwards. Unknown tokens are not cached.

use std::collections::HashMap;
use std::sync::Mutex;

use hub_core::Recover;
use hub_core::scopes::ScopeSet;

/// A cached answer is reused for at most this long (seconds).
pub const FRESH_FOR: i64 = 60;
/// Most tokens kept before the cache is emptied and refilled on demand.
const MAX_ENTRIES: usize = 10_000;

/// What the store said about a user's token.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The token's owner.
    pub user: String,
    /// Whether the owner was an admin.
    pub admin: bool,
    /// The token's effective scopes.
    pub scopes: ScopeSet,
    /// `"a<id>"`.
    pub token_id: String,
    /// Unix seconds, if the token expires.
    pub expires_at: Option<i64>,
}

/// The cache; see the module docs.
#[derive(Default)]
pub struct TokenCache(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    entries: HashMap<[u8; 32], (Entry, i64)>,
    /// Changed by every [`TokenCache::revoke_all`].
    epoch: u64,
}

impl TokenCache {
    /// Forgets every cached token. A lookup that started before this call is not cached.
    pub fn revoke_all(&self) {
        let mut c = self.0.lock().recover();
        c.entries.clear();
        c.epoch += 1;
    }

    /// The answer for `digest` at `now` (unix seconds): `None` when the store must be asked,
    /// `Some(None)` for a cached token that has expired.
    pub fn get(&self, digest: &[u8; 32], now: i64) -> Option<Option<Entry>> {
        let c = self.0.lock().recover();
        let (e, checked_at) = c.entries.get(digest)?;
        if now - checked_at >= FRESH_FOR {
            return None;
        }
        Some(e.expires_at.is_none_or(|x| x > now).then(|| e.clone()))
    }

    /// The epoch to pass to [`TokenCache::put`], read before asking the store.
    pub fn epoch(&self) -> u64 {
        self.0.lock().recover().epoch
    }

    /// Caches what the store said at `now`, unless a revocation happened since `epoch`.
    pub fn put(&self, digest: [u8; 32], entry: &Entry, now: i64, epoch: u64) {
        let mut c = self.0.lock().recover();
        if c.epoch != epoch {
            return;
        }
        if c.entries.len() >= MAX_ENTRIES {
            c.entries.clear();
        }
        c.entries.insert(digest, (entry.clone(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_at: Option<i64>) -> Entry {
        Entry { user: "ann".into(), admin: false, scopes: ScopeSet::default(), token_id: "a1".into(), expires_at }
    }

    #[test]
    fn answers_expire_and_revocations_win_races() {
        let c = TokenCache::default();
        let d = [1u8; 32];
        c.put(d, &entry(Some(1_000)), 900, c.epoch());
        assert!(matches!(c.get(&d, 950), Some(Some(_))));
        assert!(c.get(&d, 900 + FRESH_FOR).is_none(), "stale: ask the store again");
        c.put(d, &entry(Some(1_000)), 990, c.epoch());
        assert!(matches!(c.get(&d, 1_000), Some(None)), "expired");
        // A lookup that began before a revocation is not cached.
        let before = c.epoch();
        c.revoke_all();
        assert!(c.get(&d, 991).is_none());
        c.put(d, &entry(None), 991, before);
        assert!(c.get(&d, 992).is_none());
    }
}
