//! Credentials: argon2id password hashes (PHC strings, OWASP's minimum parameters,
//! computed on the blocking pool so they never stall the async runtime), generated
//! passwords, and bearer tokens (256 random bits; only their SHA-256 is stored).
//!
//! Must not log passwords, tokens or hashes, and must not touch the database: callers
//! store what this module returns through `crate::db`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use rand::Rng as _;
use rand::seq::IndexedRandom as _;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use zeroize::Zeroizing;

/// Memory cost in KiB (19 MiB): OWASP's minimum for argon2id.
pub const M_COST_KIB: u32 = 19_456;
/// Iterations: OWASP's minimum for argon2id with 19 MiB.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;

/// The production parameters every password hash is made with.
pub const PARAMS: Params = match Params::new(M_COST_KIB, T_COST, P_COST, None) {
    Ok(params) => params,
    Err(_) => panic!("argon2 parameters out of range"),
};

/// Password hashes computed at once, process-wide. Each holds `M_COST_KIB` of memory
/// while it runs, so without a bound a burst of sign-ins (unknown accounts included:
/// they are verified against a dummy hash) would take memory without limit: with
/// this, at most 4 × 19 MiB. Callers beyond it wait their turn.
pub const MAX_CONCURRENT_HASHES: usize = 4;

static HASH_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (hashing is cheap either way; this bounds request sizes).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Length of a generated password: 24 symbols of 56, about 139 bits.
pub const GENERATED_PASSWORD_LEN: usize = 24;

/// Symbols of generated passwords: letters and digits without look-alikes
/// (0/O/o, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Prefix of every bearer token, so that a leaked one is recognisable (and scannable).
pub const TOKEN_PREFIX: &str = "sp_";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the password is too short: use at least {MIN_PASSWORD_LEN} characters")]
    PasswordTooShort,
    #[error("the password is too long: use at most {MAX_PASSWORD_LEN} characters")]
    PasswordTooLong,
    #[error("`{email}` is not a usable email address: {reason}")]
    InvalidEmail { email: String, reason: &'static str },
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error("the password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// Checks a new password against the rules (length only: at least
/// [`MIN_PASSWORD_LEN`] characters, at most [`MAX_PASSWORD_LEN`]).
pub fn check_password_rules(password: &str) -> Result<(), AuthError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        Err(AuthError::PasswordTooShort)
    } else if len > MAX_PASSWORD_LEN {
        Err(AuthError::PasswordTooLong)
    } else {
        Ok(())
    }
}

/// An email address as accounts store it: trimmed and lower-cased, after a plausibility
/// check (one `@`, a non-empty local part, a domain with a dot, no spaces, at most 254
/// characters). Delivery is not checked.
pub fn normalize_email(email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    let invalid = |reason| AuthError::InvalidEmail {
        email: email.clone(),
        reason,
    };
    if email.len() > 254 {
        return Err(invalid("it is longer than 254 characters"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains spaces or control characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid("it has no `@`"));
    };
    if domain.contains('@') {
        return Err(invalid("it has more than one `@`"));
    }
    if local.is_empty() || local.len() > 64 {
        return Err(invalid("the part before `@` must be 1 to 64 characters"));
    }
    if !domain.contains('.')
        || domain.starts_with(['.', '-'])
        || domain.ends_with(['.', '-'])
        || domain.contains("..")
    {
        return Err(invalid(
            "the part after `@` is not a domain name like example.com",
        ));
    }
    Ok(email)
}

/// Hashes a new password (after [`check_password_rules`]) into an argon2id PHC string
/// with a random salt, on the blocking pool. The password is wiped from memory after.
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    let password = Zeroizing::new(password);
    check_password_rules(&password)?;
    in_hash_slot(move || hash_blocking(&password))
        .await
        .map_err(AuthError::Task)?
}

/// Runs one argon2 computation on the blocking pool, in one of the
/// [`MAX_CONCURRENT_HASHES`] slots. The slot goes with the work: the hash runs on even
/// if the caller's future is dropped (a client that went away), so its slot must not
/// come back before the hash ends.
async fn in_hash_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let slot = HASH_SLOTS.acquire().await.expect("never closed");
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
}

fn hash_blocking(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A hash of a random password with the production parameters, verified against when
/// the account is unknown so that the answer takes as long as for a known one.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_blocking(&generate_password()).expect("hashing a generated password cannot fail")
});

/// Computes the dummy hash now (at start-up) rather than on the first login of an
/// unknown account, which would otherwise take twice as long.
pub async fn warm_up() {
    let _ = tokio::task::spawn_blocking(|| LazyLock::force(&DUMMY_HASH).len()).await;
}

/// Whether `password` matches `hash`. `hash: None` (no such account) verifies against
/// a dummy hash and returns `false`, taking the same time. A malformed hash is `false`.
/// Runs on the blocking pool.
pub async fn verify_password(hash: Option<&str>, password: &str) -> bool {
    let hash = hash.map(str::to_owned);
    let password = Zeroizing::new(password.to_owned());
    in_hash_slot(move || match hash {
        Some(hash) => verify_blocking(&hash, &password),
        None => {
            let _ = verify_blocking(&DUMMY_HASH, &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    let parsed = match PasswordHash::new(hash) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "a stored password hash is not a valid PHC string");
            return false;
        }
    };
    // The parameters come from the hash itself, so hashes made with older parameters
    // still verify.
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A new random password: [`GENERATED_PASSWORD_LEN`] symbols from an alphabet without
/// look-alike characters, from the operating system's CSPRNG (through `rand`'s
/// thread-local ChaCha generator, seeded and reseeded from it).
pub fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_PASSWORD_LEN)
        .map(|_| {
            char::from(
                *PASSWORD_ALPHABET
                    .choose(&mut rng)
                    .expect("alphabet is not empty"),
            )
        })
        .collect()
}

/// A new bearer token and the hash to store: `("sp_" + base64url(32 random bytes),
/// hex SHA-256 of the whole token)`. Show the token once; store only the hash.
pub fn generate_token() -> (String, String) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill(&mut bytes[..]);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])
    );
    let hash = hash_token(&token);
    (token, hash)
}

/// The hex SHA-256 of a token, as stored in `api_tokens.token_hash`. Tokens carry 256
/// random bits, so a fast hash is enough (nothing to brute-force).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn correct_password_verifies_and_wrong_one_does_not() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert_ne!(hash, "correct horse battery");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(Some(&hash), "correct horse battery").await);
        assert!(!verify_password(Some(&hash), "correct horse batterY").await);
        assert!(!verify_password(Some(&hash), "").await);
        assert!(!verify_password(None, "correct horse battery").await);
        assert!(!verify_password(Some("not a phc string"), "x").await);
    }

    #[tokio::test]
    async fn hashing_waits_while_every_slot_is_taken() {
        let taken = HASH_SLOTS
            .acquire_many(MAX_CONCURRENT_HASHES as u32)
            .await
            .unwrap();
        let sign_in = tokio::spawn(async { verify_password(None, "a guess").await });
        let new_password = tokio::spawn(hash_password("correct horse battery".into()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!sign_in.is_finished() && !new_password.is_finished());
        drop(taken);
        assert!(!sign_in.await.unwrap());
        assert!(new_password.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_dropped_caller_keeps_its_slot_until_the_hash_ends() {
        // All slots but one held here, so the sign-in below takes the last one.
        let mut held = HASH_SLOTS
            .acquire_many(MAX_CONCURRENT_HASHES as u32)
            .await
            .unwrap();
        drop(held.split(1));
        let sign_in = tokio::spawn(async { verify_password(None, "a guess").await });
        while HASH_SLOTS.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The client goes away; the hash cannot be stopped and still holds its slot.
        sign_in.abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(HASH_SLOTS.available_permits(), 0);
        // (Not waited for here: a test queued for every slot would take the returning
        // one while this one holds the rest.)
        drop(held);
    }

    #[tokio::test]
    async fn hashes_carry_the_production_parameters() {
        let hash = hash_password("a long enough password".into())
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected PHC string {hash}"
        );
        let parsed = PasswordHash::new(&hash).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), PARAMS.m_cost());
        assert_eq!(params.t_cost(), PARAMS.t_cost());
        assert_eq!(params.p_cost(), PARAMS.p_cost());
        // OWASP's minimum for argon2id.
        assert!(PARAMS.m_cost() >= 19_456 && PARAMS.t_cost() >= 2 && PARAMS.p_cost() >= 1);
        // Salted: the same password hashes differently each time.
        let again = hash_password("a long enough password".into())
            .await
            .unwrap();
        assert_ne!(hash, again);
        // The dummy hash for unknown accounts uses the same parameters.
        assert!(DUMMY_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn password_rules_have_a_clear_message() {
        let err = hash_password("short".into()).await.unwrap_err();
        assert!(err.to_string().contains("at least 12 characters"), "{err}");
        assert!(check_password_rules(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert!(check_password_rules("twelve chars").is_ok());
    }

    /// Verifying for an unknown account must cost what verifying a known one costs, so
    /// response times do not reveal which emails have accounts. A behavioural check
    /// with generous bounds (medians of interleaved runs), not a benchmark.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_accounts_take_as_long_as_known_ones() {
        let hash = hash_password("the real password".into()).await.unwrap();
        warm_up().await;
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            assert!(!verify_password(Some(&hash), "a wrong password").await);
            known.push(t.elapsed());
            let t = Instant::now();
            assert!(!verify_password(None, "a wrong password").await);
            unknown.push(t.elapsed());
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (k, u) = (median(&mut known), median(&mut unknown));
        let ratio = u.as_secs_f64() / k.as_secs_f64();
        eprintln!("verify: known {k:?}, unknown {u:?}, ratio {ratio:.2}");
        assert!((0.5..=2.0).contains(&ratio), "known {k:?} vs unknown {u:?}");
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@example..com",
            "a@.example.com",
        ] {
            let err = normalize_email(bad).unwrap_err().to_string();
            assert!(err.contains("not a usable email address"), "{bad}: {err}");
        }
    }

    #[test]
    fn generated_passwords() {
        let a = generate_password();
        let b = generate_password();
        assert_ne!(a, b);
        assert!(a.len() >= 20);
        assert!(check_password_rules(&a).is_ok());
        assert!(a.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)));
        for c in b"0O1lIo" {
            assert!(!PASSWORD_ALPHABET.contains(c), "{}", char::from(*c));
        }
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (token, hash) = generate_token();
        assert!(token.starts_with(TOKEN_PREFIX));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token[TOKEN_PREFIX.len()..])
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(hash, hash_token(&token));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&token[TOKEN_PREFIX.len()..]));
        let (other, other_hash) = generate_token();
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
