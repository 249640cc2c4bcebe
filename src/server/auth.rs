//! HTTP basic auth against bcrypt hashes, with a cache of successful
//! verifications so that a scrape costs a SHA-256, not a bcrypt, once a
//! user's password has been checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail};
use axum::http::HeaderValue;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

/// Cached successful (user, password) pairs kept at most; the cache is
/// cleared when full. Only passwords that verified get in, so it stays tiny.
const CACHE_MAX: usize = 1024;

/// bcrypt verifications run since start (process-wide); shows the cache at work.
static BCRYPT_VERIFICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Number of bcrypt verifications run by this process so far.
pub fn bcrypt_verifications() -> u64 {
    BCRYPT_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) struct BasicAuth {
    /// (user, bcrypt hash); searched in full on every miss so a lookup's
    /// time does not depend on where (or whether) the user is found.
    users: Vec<(String, String)>,
    /// Verified against when the user is unknown, so an unknown user costs a
    /// bcrypt too and user names cannot be probed by timing.
    dummy_hash: String,
    /// Random per process: cache keys are SHA-256(salt, user, password, hash),
    /// so the cache holds no plain password digest.
    salt: [u8; 32],
    cache: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt per key at a time: 50 scrapers arriving together with the
    /// same credentials cost one verification, not 50.
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds the CPU a flood of wrong passwords can take.
    bcrypt_slots: Semaphore,
}

impl BasicAuth {
    pub(crate) fn new(users: BTreeMap<String, String>) -> anyhow::Result<BasicAuth> {
        let mut max_cost = 4;
        let mut list = Vec::with_capacity(users.len());
        for (user, hash) in users {
            if user.contains(':') {
                bail!("user {user:?}: a user name cannot contain ':'");
            }
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
                anyhow!("user {user:?}: the password must be a bcrypt hash ($2y$10$...): {e}")
            })?;
            let cost = parts.get_cost();
            if !(4..=31).contains(&cost) {
                bail!("user {user:?}: bcrypt cost {cost} is outside 4..31");
            }
            max_cost = max_cost.max(cost);
            list.push((user, hash));
        }
        let mut salt = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| anyhow!("no system randomness"))?;
        let dummy_hash = bcrypt::hash(salt, max_cost).map_err(|e| anyhow!("bcrypt: {e}"))?;
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(BasicAuth {
            users: list,
            dummy_hash,
            salt,
            cache: Mutex::new(HashSet::new()),
            inflight: Mutex::new(HashMap::new()),
            bcrypt_slots: Semaphore::new(slots),
        })
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    fn find(&self, user: &str) -> Option<&str> {
        let mut found = None;
        for (u, h) in &self.users {
            if bool::from(u.as_bytes().ct_eq(user.as_bytes())) {
                found = Some(h.as_str());
            }
        }
        found
    }

    fn cache_key(&self, user: &str, password: &[u8], hash: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        for part in [user.as_bytes(), password, hash.as_bytes()] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// Whether the `Authorization` header carries valid credentials.
    pub(crate) async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.find(&user) {
            Some(h) => (h.to_string(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let key = self.cache_key(&user, &password, &hash);
        if known && self.lock().contains(&key) {
            return true;
        }
        let flight = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let ok = {
            let _turn = flight.lock().await;
            // A request ahead of us with the same credentials may have verified them.
            if known && self.lock().contains(&key) {
                true
            } else {
                let ok = self.verify(password, hash).await && known;
                if ok {
                    let mut cache = self.lock();
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(key);
                }
                ok
            }
        };
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if inflight
            .get(&key)
            .is_some_and(|f| Arc::ptr_eq(f, &flight) && Arc::strong_count(f) == 2)
        {
            inflight.remove(&key);
        }
        ok
    }

    async fn verify(&self, password: Vec<u8>, hash: String) -> bool {
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        BCRYPT_VERIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `Basic base64(user:password)`; the user must be UTF-8, the password is bytes.
fn parse_basic(v: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let v = v.as_bytes();
    let scheme = v.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(v[6..].trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pw: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), bcrypt::hash("s3cret:x", 4).unwrap());
        users.insert("bob".to_string(), bcrypt::hash("hunter2", 4).unwrap());
        BasicAuth::new(users).unwrap()
    }

    #[tokio::test]
    async fn checks_and_caches_only_successes() {
        let a = auth();
        assert!(a.check(Some(&basic("alice", "s3cret:x"))).await);
        assert!(a.check(Some(&basic("bob", "hunter2"))).await);
        assert_eq!(a.lock().len(), 2);
        assert!(a.check(Some(&basic("alice", "s3cret:x"))).await);
        assert_eq!(a.lock().len(), 2);
        assert!(!a.check(Some(&basic("alice", "hunter2"))).await);
        assert!(!a.check(Some(&basic("carol", "hunter2"))).await);
        assert!(!a.check(Some(&basic("", ""))).await);
        assert!(!a.check(None).await);
        assert!(!a.check(Some(&HeaderValue::from_static("Bearer abc"))).await);
        assert!(!a.check(Some(&HeaderValue::from_static("Basic !!!"))).await);
        assert_eq!(a.lock().len(), 2);
        assert!(a.inflight.lock().unwrap().is_empty());
    }

    #[test]
    fn parses_header() {
        let (u, p) = parse_basic(&basic("alice", "a:b")).unwrap();
        assert_eq!((u.as_str(), p.as_slice()), ("alice", &b"a:b"[..]));
        let lower = HeaderValue::from_static("basic YWxpY2U6eA==");
        assert_eq!(parse_basic(&lower).unwrap().0, "alice");
        assert!(parse_basic(&HeaderValue::from_static("Basic YWxpY2U=")).is_none());
    }

    #[test]
    fn rejects_non_bcrypt() {
        let mut users = BTreeMap::new();
        users.insert("a".to_string(), "$1$abc$def".to_string());
        let e = BasicAuth::new(users).err().unwrap().to_string();
        assert!(e.contains("bcrypt"), "{e}");
    }
}
