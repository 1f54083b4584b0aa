//! Encryption at rest for store credentials: the passwords Storeplane generates for a
//! store's database and admin are sealed with XChaCha20-Poly1305 under one 32-byte key
//! before they reach the database (`stores.secrets_sealed`), and opened only when a
//! store is rendered.
//!
//! The key lives in a file (64 hex digits) created with mode 0600 on first start; every
//! replica must share it. Sealed values are `v1:` + base64(nonce ‖ ciphertext ‖ tag),
//! with a random 24-byte nonce each time.
//!
//! Must not log keys or plaintexts, and must not touch the database.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng as _;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const VERSION_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("could not read the credential encryption key {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not create the credential encryption key {}; check that its directory is writable", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the credential encryption key{} is not 64 hex digits (32 bytes); restore the original key file (a new key cannot open credentials sealed with the old one)", at(.path))]
    BadKey { path: Option<PathBuf> },
    #[error(
        "sealed credentials are malformed ({reason}); they were not written by this version of Storeplane or were damaged"
    )]
    Malformed { reason: &'static str },
    #[error("could not open sealed credentials: the key{} is not the one they were sealed with, or they were altered; every replica must use the same key file (STOREPLANE_SECRET_KEY_FILE)", at(.path))]
    Decrypt { path: Option<PathBuf> },
}

fn at(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" in {}", p.display()),
        None => String::new(),
    }
}

/// Seals and opens store credentials with the platform's key. `Debug` hides the key.
#[derive(Clone)]
pub struct Vault {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// Where the key came from, for messages.
    path: Option<PathBuf>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("key_file", &self.path)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the key from `path`, or creates a new random one there (mode 0600, parent
    /// directories too) when the file does not exist. Warns when an existing key file is
    /// readable by others than its owner.
    pub fn load_or_create(path: &Path) -> Result<Vault, VaultError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_exposed(path);
                Vault::parse(&Zeroizing::new(text), Some(path.to_owned()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vault::create(path),
            Err(source) => Err(VaultError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A vault from 64 hex digits (for tests and keys from a secret store).
    pub fn from_key_hex(hex_key: &str) -> Result<Vault, VaultError> {
        Vault::parse(hex_key, None)
    }

    fn parse(text: &str, path: Option<PathBuf>) -> Result<Vault, VaultError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), &mut key[..])
            .map_err(|_| VaultError::BadKey { path: path.clone() })?;
        Ok(Vault { key, path })
    }

    fn create(path: &Path) -> Result<Vault, VaultError> {
        let create_err = |source| VaultError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create_err)?;
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill(&mut key[..]);
        let text = Zeroizing::new(format!("{}\n", hex::encode(&key[..])));
        // Written whole to a file of its own, then linked into place: the key file
        // either does not exist or holds a key — never empty or half-written (a crash
        // in between, or another process reading it too early).
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
        let tmp = path.with_file_name(name);
        let write_new = |at: &Path| -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(at)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        let linked = write_new(&tmp).and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        // A filesystem without hard links (vfat, some network shares): written in place.
        let linked = match linked {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => write_new(path),
            other => other,
        };
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a new credential encryption key; back it up and share it with every replica");
                Ok(Vault {
                    key,
                    path: Some(path.to_owned()),
                })
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Vault::load_or_create(path),
            Err(source) => Err(create_err(source)),
        }
    }

    /// Encrypts `plaintext`: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!(
            "{VERSION_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Decrypts what [`Vault::seal`] produced. Fails on another key or altered data.
    pub fn open(&self, sealed: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let body = sealed
            .strip_prefix(VERSION_PREFIX)
            .ok_or(VaultError::Malformed {
                reason: "no `v1:` prefix",
            })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| VaultError::Malformed {
                reason: "not base64",
            })?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed {
                reason: "too short",
            });
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Decrypt {
                path: self.path.clone(),
            })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&self.key[..]).expect("the key is 32 bytes")
    }
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        // Group access is how Kubernetes hands a Secret to a non-root pod (`fsGroup`
        // turns 0400 into 0440), so only access for everyone else is a warning.
        if mode & 0o007 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the credential encryption key is readable by every user; restrict it with `chmod 600` (on Kubernetes: defaultMode 0400 on the Secret volume)"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trip() {
        let vault = Vault::from_key_hex(KEY).unwrap();
        let sealed = vault.seal(b"db-password: hunter2hunter2");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            &vault.open(&sealed).unwrap()[..],
            b"db-password: hunter2hunter2"
        );
        // A fresh nonce each time.
        assert_ne!(vault.seal(b"same"), vault.seal(b"same"));
        assert_eq!(&vault.open(&vault.seal(b"")).unwrap()[..], b"");
    }

    #[test]
    fn tampering_is_detected() {
        let vault = Vault::from_key_hex(KEY).unwrap();
        let sealed = vault.seal(b"secret");
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed[3..])
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        assert!(matches!(
            vault.open(&tampered),
            Err(VaultError::Decrypt { .. })
        ));
        bytes[last] ^= 1;
        bytes[NONCE_LEN] ^= 0x80;
        let tampered = format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        assert!(vault.open(&tampered).is_err());
        assert!(matches!(
            vault.open("v2:abc"),
            Err(VaultError::Malformed { .. })
        ));
        assert!(matches!(
            vault.open("v1:!!"),
            Err(VaultError::Malformed { .. })
        ));
        assert!(matches!(
            vault.open("v1:AAAA"),
            Err(VaultError::Malformed { .. })
        ));
    }

    #[test]
    fn wrong_key_names_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = Vault::load_or_create(&dir.path().join("a.key")).unwrap();
        let b = Vault::load_or_create(&dir.path().join("b.key")).unwrap();
        let err = b.open(&a.seal(b"secret")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VaultError::Decrypt { .. }));
        assert!(text.contains("b.key"), "{text}");
        assert!(text.contains("not the one they were sealed with"), "{text}");
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret.key");
        let first = Vault::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        let second = Vault::load_or_create(&path).unwrap();
        assert_eq!(&second.open(&first.seal(b"x")).unwrap()[..], b"x");
        assert!(!format!("{first:?}").contains(text.trim()));
        // The file it was written to first is gone.
        let files: Vec<_> = std::fs::read_dir(dir.path().join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["secret.key"]);
    }

    #[test]
    fn processes_creating_the_key_at_once_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let vaults: Vec<Vault> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Vault::load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sealed = vaults[0].seal(b"one key");
        for v in &vaults {
            assert_eq!(&v.open(&sealed).unwrap()[..], b"one key");
        }
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(
            Vault::from_key_hex("abcd"),
            Err(VaultError::BadKey { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not hex").unwrap();
        let err = Vault::load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.key") && err.contains("64 hex digits"),
            "{err}"
        );
    }
}
