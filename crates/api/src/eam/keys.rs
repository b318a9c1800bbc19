//! Where the provider's signing keys are kept: in the store (the default, shared by the
//! nodes) or in a key file (`[eam] key_file`). Either way the private key is sealed with
//! AES-256-GCM under a key derived from the token secret (HMAC-SHA256(token secret,
//! "eam-signing-key")), the key id as associated data: a copy of the database or of the file
//! alone does not let anyone sign a token for a user.
//!
//! Keys are made at first start ([`KeyStore::ensure`]) and rolled over by
//! `callverify eam-keys rotate` ([`KeyStore::rotate`]); every read goes to where they are
//! kept, so a node sees a new key at its next request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use eam::keys::{KeyRecord, Keyring};
use hmac::Mac;
use ring::aead;
use serde::{Deserialize, Serialize};
use store::{Store, StoredEamKey};

/// Why keys could not be read, made or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The store failed.
    #[error("the store: {0}")]
    Store(#[from] store::StoreError),
    /// The key file could not be read or written.
    #[error("the key file {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A key does not open with this token secret (another secret, or a damaged key).
    #[error(
        "signing key {0} does not open with this token secret: the secret changed, or the key \
         is damaged"
    )]
    Sealed(String),
    /// Making or parsing a key failed.
    #[error("a signing key: {0}")]
    Key(#[from] eam::keys::KeyError),
}

/// Where the keys are kept.
#[derive(Clone, Debug)]
pub enum KeyPlace {
    /// The store's `eam_keys` table.
    Store,
    /// A JSON file, written whole (a temporary file renamed over it), readable by its owner
    /// only.
    File(PathBuf),
}

/// The provider's keys, where they are kept.
#[derive(Clone)]
pub struct KeyStore {
    place: KeyPlace,
    store: Store,
    seal: [u8; 32],
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// The key file's shape.
#[derive(Serialize, Deserialize, Default)]
struct KeyFile {
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
struct FileKey {
    kid: String,
    /// Standard base64 of the sealed private key.
    sealed_key: String,
    /// Standard base64 of the certificate (DER).
    certificate: String,
    created_ms: i64,
    sign_from_ms: i64,
}

/// The key file is refused above this size.
const MAX_KEY_FILE: u64 = 1024 * 1024;

impl KeyStore {
    /// The keys kept at `place`, sealed under `token_secret`.
    pub fn new(place: KeyPlace, store: Store, token_secret: &[u8]) -> KeyStore {
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(token_secret)
            .expect("HMAC takes any key length");
        // A label no poll token is made with (those MAC a challenge id, `ch_…`).
        mac.update(b"eam-signing-key");
        KeyStore {
            place,
            store,
            seal: mac.finalize().into_bytes().into(),
        }
    }

    /// Every key kept, opened.
    pub async fn load(&self) -> Result<Keyring, KeyStoreError> {
        let stored = self.stored().await?;
        let records = stored
            .into_iter()
            .map(|k| self.open(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring::new(records))
    }

    /// Makes the first key when there is none (first start): it signs at once.
    pub async fn ensure(&self, issuer: &str, now_ms: i64) -> Result<Option<String>, KeyStoreError> {
        if !self.stored().await?.is_empty() {
            return Ok(None);
        }
        let record = Keyring::new(Vec::new()).next_key(issuer, now_ms, Duration::ZERO, true)?;
        let kid = record.kid.clone();
        self.add(&record).await?;
        Ok(Some(kid))
    }

    /// Adds the next key: published at once, signing after `publish` (or at once with
    /// `at_once`). Its record is returned.
    pub async fn rotate(
        &self,
        issuer: &str,
        now_ms: i64,
        publish: Duration,
        at_once: bool,
    ) -> Result<KeyRecord, KeyStoreError> {
        let ring = self.load().await?;
        let record = ring.next_key(issuer, now_ms, publish, at_once)?;
        self.add(&record).await?;
        Ok(record)
    }

    async fn stored(&self) -> Result<Vec<StoredEamKey>, KeyStoreError> {
        match &self.place {
            KeyPlace::Store => Ok(self.store.eam_keys().await?),
            KeyPlace::File(path) => read_file(path)?
                .keys
                .into_iter()
                .map(|k| stored_of(path, k))
                .collect(),
        }
    }

    async fn add(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        let sealed = self.close(record);
        match &self.place {
            KeyPlace::Store => Ok(self.store.add_eam_key(&sealed).await?),
            KeyPlace::File(path) => {
                let mut file = read_file(path)?;
                let b64 = base64::engine::general_purpose::STANDARD;
                file.keys.push(FileKey {
                    kid: sealed.kid,
                    sealed_key: b64.encode(&sealed.sealed_key),
                    certificate: b64.encode(&sealed.certificate),
                    created_ms: sealed.created_ms,
                    sign_from_ms: sealed.sign_from_ms,
                });
                write_file(path, &file)
            }
        }
    }

    fn key(&self) -> aead::LessSafeKey {
        let unbound =
            aead::UnboundKey::new(&aead::AES_256_GCM, &self.seal).expect("a 32-byte AES-256 key");
        aead::LessSafeKey::new(unbound)
    }

    /// The record with its private key sealed: a fresh 96-bit nonce, then the ciphertext and
    /// tag.
    fn close(&self, r: &KeyRecord) -> StoredEamKey {
        let mut nonce = [0u8; aead::NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random generator works");
        let mut data = r.pkcs8_der.clone();
        self.key()
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(&r.kid, r.sign_from_ms, &r.cert_der)),
                &mut data,
            )
            .expect("AES-GCM seals any length kept here");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        StoredEamKey {
            kid: r.kid.clone(),
            sealed_key: sealed,
            certificate: r.cert_der.clone(),
            created_ms: r.created_ms,
            sign_from_ms: r.sign_from_ms,
        }
    }

    fn open(&self, k: StoredEamKey) -> Result<KeyRecord, KeyStoreError> {
        let bad = || KeyStoreError::Sealed(k.kid.clone());
        if k.sealed_key.len() < aead::NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = k.sealed_key.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut data = sealed.to_vec();
        let plain = self
            .key()
            .open_in_place(
                nonce,
                aead::Aad::from(aad(&k.kid, k.sign_from_ms, &k.certificate)),
                &mut data,
            )
            .map_err(|_| bad())?;
        Ok(KeyRecord {
            kid: k.kid.clone(),
            pkcs8_der: plain.to_vec(),
            cert_der: k.certificate,
            created_ms: k.created_ms,
            sign_from_ms: k.sign_from_ms,
        })
    }
}

/// What the seal authenticates besides the private key: the key id, from when it signs and
/// its certificate, so that whoever can write the store cannot make a key sign earlier or
/// later than it was made to, nor publish another certificate beside it.
fn aad(kid: &str, sign_from_ms: i64, certificate: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut a = kid.as_bytes().to_vec();
    a.push(0);
    a.extend_from_slice(&sign_from_ms.to_be_bytes());
    a.extend_from_slice(&sha2::Sha256::digest(certificate));
    a
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// The key file (empty when it does not exist yet).
fn read_file(path: &Path) -> Result<KeyFile, KeyStoreError> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyFile::default()),
        Err(e) => return Err(file_error(path, e)),
    };
    let mut text = String::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| file_error(path, e))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(file_error(path, "over 1 MiB"));
    }
    serde_json::from_str(&text).map_err(|e| file_error(path, e))
}

fn write_file(path: &Path, file: &KeyFile) -> Result<(), KeyStoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(file).map_err(|e| file_error(path, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_error(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_error(path, e))
}

fn stored_of(path: &Path, k: FileKey) -> Result<StoredEamKey, KeyStoreError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| {
        b64.decode(s)
            .map_err(|e| file_error(path, format!("key {}: {e}", k.kid)))
    };
    Ok(StoredEamKey {
        sealed_key: decode(&k.sealed_key)?,
        certificate: decode(&k.certificate)?,
        kid: k.kid.clone(),
        created_ms: k.created_ms,
        sign_from_ms: k.sign_from_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite() -> Store {
        let dir = std::env::temp_dir().join(format!("cv-eam-store-{}", store::new_id("t")));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&format!("sqlite://{}", dir.join("cv.db").display()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn keys_are_sealed_in_the_store_and_open_with_the_secret_only() {
        let store = sqlite().await;
        let keys = KeyStore::new(KeyPlace::Store, store.clone(), b"secret");
        let first = keys.ensure("https://mfa.example", 1_000).await.unwrap();
        assert!(first.is_some(), "the first start makes a key");
        assert_eq!(
            keys.ensure("https://mfa.example", 2_000).await.unwrap(),
            None
        );
        let ring = keys.load().await.unwrap();
        let signer = ring.signer(1_000).expect("the first key signs at once");
        // What the store holds is not the private key.
        let stored = store.eam_keys().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0].sealed_key, signer.pkcs8_der);
        assert!(
            !stored[0]
                .sealed_key
                .windows(32)
                .any(|w| signer.pkcs8_der.windows(32).next() == Some(w)),
            "no plain key bytes in the store"
        );
        // Another token secret does not open it.
        let other = KeyStore::new(KeyPlace::Store, store, b"other secret");
        assert!(matches!(other.load().await, Err(KeyStoreError::Sealed(_))));
    }

    #[tokio::test]
    async fn a_key_file_holds_rotations_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cv-eam-keys-{}", store::new_id("t")));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let keys = KeyStore::new(KeyPlace::File(path.clone()), sqlite().await, b"secret");
        keys.ensure("https://mfa.example", 1_000).await.unwrap();
        let next = keys
            .rotate(
                "https://mfa.example",
                5_000,
                Duration::from_secs(3600),
                false,
            )
            .await
            .unwrap();
        assert_eq!(next.sign_from_ms, 5_000 + 3_600_000);
        let ring = keys.load().await.unwrap();
        assert_ne!(
            ring.signer(6_000).unwrap().kid,
            next.kid,
            "the old key still signs"
        );
        assert_eq!(ring.signer(next.sign_from_ms).unwrap().kid, next.kid);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is its owner's only");
        // A damaged seal is refused, not used.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut file: KeyFile = serde_json::from_str(&text).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sealed = b64.decode(&file.keys[0].sealed_key).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        file.keys[0].sealed_key = b64.encode(&sealed);
        write_file(&path, &file).unwrap();
        assert!(matches!(keys.load().await, Err(KeyStoreError::Sealed(_))));
        // So is a key made to sign at another time, or with another certificate.
        file.keys[0].sealed_key = b64.encode({
            sealed[last] ^= 1;
            &sealed
        });
        file.keys[0].sign_from_ms += 1;
        write_file(&path, &file).unwrap();
        assert!(matches!(keys.load().await, Err(KeyStoreError::Sealed(_))));
        file.keys[0].sign_from_ms -= 1;
        write_file(&path, &file).unwrap();
        assert!(keys.load().await.is_ok(), "restored, it opens");
        file.keys[0].certificate = file.keys[1].certificate.clone();
        write_file(&path, &file).unwrap();
        assert!(matches!(keys.load().await, Err(KeyStoreError::Sealed(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
