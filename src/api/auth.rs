//! Bearer-token authentication: the `bearerAuth` security scheme of the spec, and
//! turning a token into the calling account. Tokens are looked up by their SHA-256
//! (`crate::auth::hash_token`); a verified token is remembered for a few seconds so
//! that a burst of requests costs one database lookup.
//!
//! Must not log tokens or their hashes.

use super::problem::ApiError;
use super::state::AppState;
use crate::db::{DbError, Role, User};
use chrono::{DateTime, Utc};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bearer token from `POST /api/auth/login`, sent as `Authorization: Bearer <token>`.
/// It is checked before anything else in the request: an unknown, revoked or expired
/// token is a 401, whatever else is wrong with the request.
// (The checker runs while the request is read, before its query and body are parsed;
// the handler gets the calling account.)
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "opaque", checker = "check_bearer")]
pub struct BearerAuth(pub Caller);

async fn check_bearer(req: &poem::Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req
        .data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal("the API state is not attached to the request"))?;
    Ok(authenticate(state, &bearer.token).await?)
}

/// The account a request is made by. `Debug` leaves the token's hash out.
#[derive(Clone)]
pub struct Caller {
    pub user: User,
    /// The hash of the token it authenticated with (logout deletes it).
    pub token_hash: String,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

/// How long a verified token is trusted without asking the database again. A token
/// revoked on another replica keeps working here for at most this long.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most tokens remembered; the cache is emptied when it is full.
const TOKEN_CACHE_MAX: usize = 10_000;

struct Cached {
    user: User,
    expires_at: Option<DateTime<Utc>>,
    fetched: Instant,
}

/// Recently verified tokens, by hash.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<String, Cached>,
    /// Evictions so far. A lookup that read the database before an eviction must not
    /// put its (possibly just revoked) token back after it.
    evictions: u64,
}

impl TokenCache {
    fn get(&self, hash: &str, now: DateTime<Utc>) -> Option<User> {
        let entries = self.entries.lock().ok()?;
        let c = entries.by_hash.get(hash)?;
        let fresh = c.fetched.elapsed() < TOKEN_CACHE_TTL;
        let valid = c.expires_at.is_none_or(|t| t > now);
        (fresh && valid).then(|| c.user.clone())
    }

    /// Where the cache stands, taken before reading the database for a [`Self::put`].
    fn mark(&self) -> u64 {
        self.entries.lock().map_or(u64::MAX, |e| e.evictions)
    }

    /// Remembers a token read from the database since `mark`, unless a token was
    /// evicted in between (a logout racing this lookup): then nothing is remembered,
    /// and the next request asks the database again.
    fn put(&self, mark: u64, hash: String, user: User, expires_at: Option<DateTime<Utc>>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.evictions != mark {
                return;
            }
            if entries.by_hash.len() >= TOKEN_CACHE_MAX {
                entries.by_hash.clear();
            }
            entries.by_hash.insert(
                hash,
                Cached {
                    user,
                    expires_at,
                    fetched: Instant::now(),
                },
            );
        }
    }

    /// Forgets a token (logout).
    pub fn evict(&self, hash: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.evictions += 1;
            entries.by_hash.remove(hash);
        }
    }
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized(
        "the bearer token is unknown, revoked or expired; sign in again with POST \
         /api/auth/login",
    )
}

/// The account behind a bearer token, or 401.
async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let token = token.trim();
    if !token.starts_with(crate::auth::TOKEN_PREFIX) || token.len() > 200 {
        return Err(invalid_token());
    }
    let hash = crate::auth::hash_token(token);
    match account_for_token(state, &hash).await? {
        Some(user) => Ok(Caller {
            user,
            token_hash: hash,
        }),
        None => Err(invalid_token()),
    }
}

/// The account a token (by its hash) still stands for: `None` once it is revoked or
/// expired. Long requests (event streams) ask again as they go.
pub async fn account_for_token(state: &AppState, hash: &str) -> Result<Option<User>, DbError> {
    let now = Utc::now();
    if let Some(user) = state.tokens.get(hash, now) {
        return Ok(Some(user));
    }
    let mark = state.tokens.mark();
    Ok(match state.db.user_for_token(hash, now).await? {
        Some((user, record)) => {
            state
                .tokens
                .put(mark, hash.to_owned(), user.clone(), record.expires_at);
            Some(user)
        }
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: uuid::Uuid::nil(),
            email: "a@example.test".into(),
            password_hash: "$argon2id$…".into(),
            role: Role::Member,
            store_limit: 10,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_caller_debugs_without_its_token_hash_or_password_hash() {
        let caller = Caller {
            user: user(),
            token_hash: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
        };
        let text = format!("{caller:?}");
        assert!(text.contains("a@example.test"), "{text}");
        assert!(!text.contains("0f1e2d3c"), "{text}");
        assert!(!text.contains("argon2id"), "{text}");
    }

    #[test]
    fn a_lookup_that_raced_a_logout_does_not_put_the_token_back() {
        let cache = TokenCache::default();
        let now = Utc::now();

        // The ordinary path: read, remember, served from memory.
        let mark = cache.mark();
        cache.put(mark, "t1".into(), user(), None);
        assert!(cache.get("t1", now).is_some());

        // A request reads t2 from the database (still valid then); a logout of t2
        // deletes and evicts it; the first request finishes and must not cache it.
        let mark = cache.mark();
        cache.evict("t2");
        cache.put(mark, "t2".into(), user(), None);
        assert!(cache.get("t2", now).is_none(), "a revoked token came back");

        // The logout of t1 forgets it; a lookup started after it caches again.
        cache.evict("t1");
        assert!(cache.get("t1", now).is_none());
        let mark = cache.mark();
        cache.put(mark, "t3".into(), user(), None);
        assert!(cache.get("t3", now).is_some());

        // An expired token is not served from memory.
        let mark = cache.mark();
        cache.put(
            mark,
            "t4".into(),
            user(),
            Some(now - chrono::Duration::seconds(1)),
        );
        assert!(cache.get("t4", now).is_none());
    }
}
