//! Encryption at rest of upstream keys (`ENCRYPTION_KEY`, spec §7), byte for byte GPT-Load v1's
//! scheme, so a database v1 encrypted opens here and the other way round:
//!
//! - the AES key is PBKDF2-HMAC-SHA256 of ENCRYPTION_KEY, salt `gpt-load-encryption-v1`,
//!   100,000 iterations, 32 bytes; derived once per process (it takes a while on purpose);
//! - a stored value is lowercase hex of `nonce ‖ ciphertext ‖ tag`, AES-256-GCM with a random
//!   12-byte nonce and no associated data;
//! - the lookup hash (`key_hash`, for dedupe, search, deletion and log correlation) is hex
//!   HMAC-SHA256 of the plaintext keyed with the derived key.
//!
//! Without ENCRYPTION_KEY values are stored as they are and the hash is plain SHA-256 hex.
//! [`KeyCipher`] is the one thing the rest of the control plane calls for any of this; it also
//! holds v1's mismatch detection (is the data encrypted the way this process expects?), which
//! `migrate-keys` ([`migrate`]) and `GET /api/dashboard/encryption-status` share.
//!
//! Not for proxy keys, AUTH_KEY or request bodies: v1 stores those in plain text, and so do we.

pub mod migrate;

use std::num::NonZeroU32;
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// v1's fixed PBKDF2 salt.
const SALT: &[u8] = b"gpt-load-encryption-v1";
/// v1's PBKDF2 iteration count.
const ITERATIONS: NonZeroU32 = NonZeroU32::new(100_000).expect("non-zero");
/// AES-256.
const KEY_LEN: usize = 32;
/// What v1 shows for a stored value the current key cannot decrypt (key lists, logs).
pub const FAILED_TO_DECRYPT: &str = "failed-to-decrypt";

/// Encrypts, decrypts and hashes upstream keys as the process is configured: with the key
/// derived from ENCRYPTION_KEY, or in v1's pass-through mode without one. Cheap to clone.
#[derive(Clone)]
pub struct KeyCipher {
    aes: Option<Arc<AesKeys>>,
}

struct AesKeys {
    aead: LessSafeKey,
    mac: hmac::Key,
    random: SystemRandom,
}

/// Why a stored value could not be decrypted. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the stored value is not hex, so it was not encrypted with ENCRYPTION_KEY")]
    NotHex,
    #[error("the stored value is too short to be AES-GCM ciphertext")]
    TooShort,
    #[error("the stored value does not decrypt with this ENCRYPTION_KEY (wrong key or damaged)")]
    WrongKey,
    #[error("the decrypted value is not UTF-8 text")]
    NotText,
    #[error("the system random generator failed; cannot make a nonce")]
    NoRandom,
    #[error("the value is too long for AES-GCM")]
    TooLong,
}

impl std::fmt::Debug for KeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("KeyCipher")
            .field("encrypting", &self.is_encrypting())
            .finish()
    }
}

impl KeyCipher {
    /// The cipher for `encryption_key`; an empty key is v1's pass-through mode. Runs PBKDF2
    /// (100,000 rounds): call once per process, not per request.
    pub fn new(encryption_key: &str) -> Self {
        if encryption_key.is_empty() {
            return Self::plain();
        }
        let mut derived = [0u8; KEY_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            ITERATIONS,
            SALT,
            encryption_key.as_bytes(),
            &mut derived,
        );
        let aes = AesKeys {
            // A 32-byte key is exactly what AES-256-GCM takes, so this cannot fail.
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &derived).expect("32-byte AES-256 key"),
            ),
            mac: hmac::Key::new(hmac::HMAC_SHA256, &derived),
            random: SystemRandom::new(),
        };
        derived.fill(0);
        Self {
            aes: Some(Arc::new(aes)),
        }
    }

    /// No ENCRYPTION_KEY: values pass through, hashes are SHA-256.
    pub fn plain() -> Self {
        Self { aes: None }
    }

    /// Whether values are encrypted (ENCRYPTION_KEY is set).
    pub fn is_encrypting(&self) -> bool {
        self.aes.is_some()
    }

    /// The value to store for the upstream key `plaintext`.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CipherError> {
        let Some(aes) = &self.aes else {
            return Ok(plaintext.to_string());
        };
        let mut nonce = [0u8; NONCE_LEN];
        aes.random
            .fill(&mut nonce)
            .map_err(|_| CipherError::NoRandom)?;
        let mut body = plaintext.as_bytes().to_vec();
        aes.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .map_err(|_| CipherError::TooLong)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + body.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        Ok(hex::encode(sealed))
    }

    /// The upstream key a stored value holds.
    pub fn decrypt(&self, stored: &str) -> Result<String, CipherError> {
        let Some(aes) = &self.aes else {
            return Ok(stored.to_string());
        };
        let mut data = hex::decode(stored).map_err(|_| CipherError::NotHex)?;
        if data.len() < NONCE_LEN {
            return Err(CipherError::TooShort);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&data[..NONCE_LEN]);
        let plaintext = aes
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut data[NONCE_LEN..],
            )
            .map_err(|_| CipherError::WrongKey)?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| CipherError::NotText)
    }

    /// The upstream key to send: the decrypted value, or the stored value itself when it does
    /// not decrypt (v1's compatibility with keys stored before encryption was turned on).
    pub fn decrypt_or_raw(&self, stored: &str) -> String {
        self.decrypt(stored).unwrap_or_else(|_| stored.to_string())
    }

    /// The value to show an admin: decrypted, or v1's `failed-to-decrypt`.
    pub fn reveal(&self, stored: &str) -> String {
        self.decrypt(stored)
            .unwrap_or_else(|_| FAILED_TO_DECRYPT.to_string())
    }

    /// The `key_hash` of the upstream key `plaintext` (empty for an empty key, as v1).
    pub fn hash(&self, plaintext: &str) -> String {
        if plaintext.is_empty() {
            return String::new();
        }
        match &self.aes {
            Some(aes) => hex::encode(hmac::sign(&aes.mac, plaintext.as_bytes())),
            None => hex::encode(digest::digest(&digest::SHA256, plaintext.as_bytes())),
        }
    }

    /// Whether a stored row is consistent with this cipher: its value decrypts and its hash is
    /// the hash of what it decrypts to. For the pass-through cipher: the hash is SHA-256 of
    /// the value, i.e. the row is plain text.
    pub fn owns(&self, stored_value: &str, stored_hash: &str) -> bool {
        self.decrypt(stored_value)
            .is_ok_and(|plain| self.hash(&plain) == stored_hash)
    }
}

/// v1's warnings for a weak ENCRYPTION_KEY (or `migrate-keys --to`); `field` names it.
pub fn strength_warnings(field: &str, key: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    if key.len() < 16 {
        warnings.push(format!(
            "{field} is shorter than 16 characters, consider using a longer password"
        ));
    }
    let lower = key.to_ascii_lowercase();
    if ["password", "sk-123456", "123456", "admin", "secret"]
        .iter()
        .any(|w| lower.contains(w))
    {
        warnings.push(format!(
            "{field} contains common weak patterns, consider using a stronger password"
        ));
    }
    warnings
}

/// How the stored keys disagree with the configured ENCRYPTION_KEY (v1's scenarios).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// ENCRYPTION_KEY is set, the keys are plain text.
    DataNotEncrypted,
    /// The keys are encrypted, ENCRYPTION_KEY is not set.
    KeyNotConfigured,
    /// The keys are encrypted with another ENCRYPTION_KEY.
    WrongKey,
}

impl Mismatch {
    /// v1's `scenario_type`.
    pub fn scenario(self) -> &'static str {
        match self {
            Mismatch::DataNotEncrypted => "data_not_encrypted",
            Mismatch::KeyNotConfigured => "key_not_configured",
            Mismatch::WrongKey => "key_mismatch",
        }
    }

    /// What is wrong and what to do, for the server log.
    pub fn advice(self) -> &'static str {
        match self {
            Mismatch::DataNotEncrypted => {
                "ENCRYPTION_KEY is set but the stored keys are plain text; they are used as they \
                 are. To encrypt them: stop gpt-load, run `gpt-load migrate-keys --to <the key>`, \
                 start again"
            }
            Mismatch::KeyNotConfigured => {
                "the stored keys are encrypted but ENCRYPTION_KEY is not set, so upstreams get \
                 ciphertext as keys: set the ENCRYPTION_KEY they were encrypted with, or stop \
                 gpt-load and run `gpt-load migrate-keys --from <that key>`"
            }
            Mismatch::WrongKey => {
                "ENCRYPTION_KEY is not the key the stored keys were encrypted with, so upstreams \
                 get ciphertext as keys: set the right one, or stop gpt-load and run \
                 `gpt-load migrate-keys --from <old key> --to <new key>`"
            }
        }
    }
}

/// Keys sampled to detect a mismatch (v1: 20).
const MISMATCH_SAMPLE: usize = 20;

/// v1's mismatch check on the first [`MISMATCH_SAMPLE`] stored keys (those with a hash).
pub async fn check_stored_keys(
    store: &store::Store,
    cipher: &KeyCipher,
) -> store::StoreResult<Option<Mismatch>> {
    let sample = store.all_keys_after(i64::MIN, MISMATCH_SAMPLE).await?;
    let rows = sample
        .iter()
        .filter(|k| !k.key_hash.is_empty())
        .map(|k| (k.key_value.as_str(), k.key_hash.as_str()));
    Ok(detect_mismatch(cipher, rows))
}

/// At start: says in the log what [`check_stored_keys`] finds, and what to do about it.
pub async fn warn_on_mismatch(store: &store::Store, cipher: &KeyCipher) {
    match check_stored_keys(store, cipher).await {
        Ok(Some(mismatch)) => tracing::warn!("{}", mismatch.advice()),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not check how the stored keys are encrypted"),
    }
}

/// v1's detection from a sample of stored `(key_value, key_hash)` rows: the share that is
/// plain text (hash = SHA-256 of the value) and the share this cipher owns decide.
/// More than 80 % plain with a key set → [`Mismatch::DataNotEncrypted`]; under 20 % plain
/// without a key → [`Mismatch::KeyNotConfigured`]; under 20 % plain and under 20 % owned with a
/// key → [`Mismatch::WrongKey`]. Anything in between is left alone, as v1 does.
pub fn detect_mismatch<'a>(
    cipher: &KeyCipher,
    sample: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Mismatch> {
    let plain = KeyCipher::plain();
    let (mut total, mut plain_count, mut owned_count) = (0usize, 0usize, 0usize);
    for (value, hash) in sample {
        total += 1;
        plain_count += usize::from(plain.owns(value, hash));
        owned_count += usize::from(cipher.is_encrypting() && cipher.owns(value, hash));
    }
    if total == 0 {
        return None;
    }
    // Compared as v1 does, in floating point: 0.8 and 0.2 of the sample size.
    let plain_rate = plain_count as f64 / total as f64;
    let owned_rate = owned_count as f64 / total as f64;
    match cipher.is_encrypting() {
        true if plain_rate > 0.8 => Some(Mismatch::DataNotEncrypted),
        false if plain_rate < 0.2 => Some(Mismatch::KeyNotConfigured),
        true if plain_rate < 0.2 && owned_rate < 0.2 => Some(Mismatch::WrongKey),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently of this code, with Python's hashlib (PBKDF2, HMAC, SHA-256) and
    // the `cryptography` package's AESGCM, following v1's algorithm.
    const PASSWORD: &str = "Xr7-Tq2m-Lp9w-Vc4n-Hd8s-Jf3b";
    const PLAINTEXT: &str = "sk-vector-Plain-0123456789";
    const DERIVED: &str = "8b0903e45eb00f02bd9d483015478cdb3484f3ebb18717ef9bab41072f1d3005";
    /// Nonce 00 01 … 0b.
    const SEALED_FIXED_NONCE: &str = "000102030405060708090a0b0cfd180626f507dc764686a3cb54a3a5d4bd5e33a088663c1bbe0a3b11b1aae4a0713f19b9b1c55fe0b0";
    /// A random nonce, as v1 writes them.
    const SEALED_RANDOM_NONCE: &str = "c2853a616312e14f5c675b7cc857462964c15debf2abd9385a90e6f9d9af93ece42a72cd36925c1518d0dbe0280b7a22b69a382f2b6d";
    const HMAC: &str = "f0f71bbc1b31d65e88972c5280b515b40fce94c00042a334bbbf497e9e47da23";
    const SHA256: &str = "5983a930ced352685d86b5c6384e3e1b6c09063d9e221bc18ece2c166a5786b4";

    #[test]
    fn derives_v1_key() {
        let mut derived = [0u8; KEY_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            ITERATIONS,
            SALT,
            PASSWORD.as_bytes(),
            &mut derived,
        );
        assert_eq!(hex::encode(derived), DERIVED);
    }

    #[test]
    fn decrypts_v1_ciphertext_and_hashes_as_v1() {
        let cipher = KeyCipher::new(PASSWORD);
        assert_eq!(cipher.decrypt(SEALED_FIXED_NONCE).unwrap(), PLAINTEXT);
        assert_eq!(cipher.decrypt(SEALED_RANDOM_NONCE).unwrap(), PLAINTEXT);
        assert_eq!(
            cipher.decrypt(&SEALED_RANDOM_NONCE.to_uppercase()).unwrap(),
            PLAINTEXT
        );
        assert_eq!(cipher.hash(PLAINTEXT), HMAC);
        assert!(cipher.owns(SEALED_RANDOM_NONCE, HMAC));
        assert_eq!(KeyCipher::plain().hash(PLAINTEXT), SHA256);
        assert_eq!(cipher.hash(""), "");
        assert_eq!(KeyCipher::plain().hash(""), "");
    }

    #[test]
    fn encrypts_in_v1_format() {
        let cipher = KeyCipher::new(PASSWORD);
        let a = cipher.encrypt(PLAINTEXT).unwrap();
        let b = cipher.encrypt(PLAINTEXT).unwrap();
        assert_ne!(a, b, "a fresh nonce every time");
        // nonce (12) + plaintext + tag (16), hex, lower case.
        assert_eq!(a.len(), 2 * (12 + PLAINTEXT.len() + 16));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert!(!a.contains(PLAINTEXT));
        assert_eq!(cipher.decrypt(&a).unwrap(), PLAINTEXT);
    }

    #[test]
    fn failures_and_fallbacks() {
        let cipher = KeyCipher::new(PASSWORD);
        let other = KeyCipher::new("another-encryption-password-x1");
        assert_eq!(
            other.decrypt(SEALED_RANDOM_NONCE),
            Err(CipherError::WrongKey)
        );
        assert_eq!(cipher.decrypt("sk-plain"), Err(CipherError::NotHex));
        assert_eq!(cipher.decrypt("0011"), Err(CipherError::TooShort));
        assert_eq!(
            cipher.decrypt("000102030405060708090a0b"),
            Err(CipherError::WrongKey)
        );
        assert_eq!(cipher.decrypt_or_raw("sk-plain"), "sk-plain");
        assert_eq!(other.reveal(SEALED_RANDOM_NONCE), FAILED_TO_DECRYPT);
        let plain = KeyCipher::plain();
        assert_eq!(plain.encrypt("sk-x").unwrap(), "sk-x");
        assert_eq!(
            plain.decrypt(SEALED_RANDOM_NONCE).unwrap(),
            SEALED_RANDOM_NONCE
        );
        assert!(!format!("{cipher:?}").contains(DERIVED));
    }

    fn rows(stored: &[(&str, &str)]) -> Vec<(String, String)> {
        stored
            .iter()
            .map(|(v, h)| (v.to_string(), h.to_string()))
            .collect()
    }

    fn pairs(rows: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
        rows.iter().map(|(v, h)| (v.as_str(), h.as_str()))
    }

    #[test]
    fn mismatch_scenarios() {
        let cipher = KeyCipher::new(PASSWORD);
        let other = KeyCipher::new("another-encryption-password-x1");
        let plain = KeyCipher::plain();
        let (ha, hb) = (plain.hash("sk-a"), plain.hash("sk-b"));
        let plain_rows = rows(&[("sk-a", &ha), ("sk-b", &hb)]);
        let sealed_rows = rows(&[(SEALED_RANDOM_NONCE, HMAC)]);
        assert_eq!(detect_mismatch(&plain, pairs(&plain_rows)), None);
        assert_eq!(detect_mismatch(&cipher, pairs(&sealed_rows)), None);
        assert_eq!(
            detect_mismatch(&cipher, pairs(&plain_rows)),
            Some(Mismatch::DataNotEncrypted)
        );
        assert_eq!(
            detect_mismatch(&plain, pairs(&sealed_rows)),
            Some(Mismatch::KeyNotConfigured)
        );
        assert_eq!(
            detect_mismatch(&other, pairs(&sealed_rows)),
            Some(Mismatch::WrongKey)
        );
        assert_eq!(detect_mismatch(&cipher, []), None);
        // Half plain, half encrypted: v1 says nothing.
        let mixed: Vec<_> = plain_rows
            .iter()
            .chain(&sealed_rows)
            .chain(&sealed_rows)
            .cloned()
            .collect();
        assert_eq!(detect_mismatch(&plain, pairs(&mixed)), None);
    }

    #[test]
    fn weak_keys_warned() {
        assert_eq!(strength_warnings("ENCRYPTION_KEY", "short").len(), 1);
        assert_eq!(
            strength_warnings("ENCRYPTION_KEY", "my-admin-password-1").len(),
            1
        );
        assert!(strength_warnings("ENCRYPTION_KEY", PASSWORD).is_empty());
    }
}
