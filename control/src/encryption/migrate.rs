//! `gpt-load migrate-keys`: re-encrypts the upstream keys already stored when encryption at rest
//! is turned on (`--to NEW`), off (`--from OLD`) or moved to another key (`--from OLD --to
//! NEW`), with GPT-Load v1's safety checks (spec §7):
//!
//! 1. every stored key must decrypt with the old key (plain text when there is no `--from`),
//!    and "enable" refuses data that already looks encrypted, so nothing is encrypted twice;
//! 2. every key gets its new value and hash, in id batches of 1000, all inside one write
//!    transaction;
//! 3. every rewritten row is read back and must decrypt with the new key to a value whose hash
//!    is the stored one; any failure rolls the whole transaction back.
//!
//! v1 stages the new values in a `temp_migration` table and swaps them in; one transaction gives
//! the same all-or-nothing result without the extra table. As in v1 only `api_keys` is
//! migrated: request logs written before keep the old encryption (the console shows their key
//! as `failed-to-decrypt`). The server must not run meanwhile: it holds the keys in memory and
//! would go on writing with the old ENCRYPTION_KEY.

use clap::{ArgGroup, Args};
use store::{NewKey, Store};

use super::{KeyCipher, strength_warnings};

/// Keys per batch, as v1.
const BATCH: usize = 1000;
/// Keys sampled to tell plain text from ciphertext before "enable" (v1: 20).
const SAMPLE: usize = 20;

/// Re-encrypt the stored upstream keys for a new ENCRYPTION_KEY (stop gpt-load first).
#[derive(Args, Debug)]
#[command(
    group(ArgGroup::new("keys").required(true).multiple(true).args(["from", "to"])),
    long_about = "Re-encrypts the upstream keys stored in DATABASE_DSN (read from the \
        environment or .env, as the server does):\n\n  \
        enable encryption:   gpt-load migrate-keys --to NEW\n  \
        disable encryption:  gpt-load migrate-keys --from OLD\n  \
        change the key:      gpt-load migrate-keys --from OLD --to NEW\n\n\
        Stop gpt-load before running this: the server must not run during the migration. \
        Back up the database first. Every key is checked before anything changes, and the \
        rewrite is one transaction: on any error no key is changed. Afterwards start \
        gpt-load with ENCRYPTION_KEY set to NEW (or unset it after --from alone)."
)]
pub struct MigrateKeysArgs {
    /// The ENCRYPTION_KEY the stored keys are encrypted with now (omit if they are plain text)
    #[arg(long, value_name = "OLD")]
    from: Option<String>,
    /// The ENCRYPTION_KEY to encrypt them with (omit to store them as plain text)
    #[arg(long, value_name = "NEW")]
    to: Option<String>,
}

/// What the migration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Enable,
    Disable,
    Rotate,
}

impl Direction {
    fn of(from: &str, to: &str) -> Result<Self, String> {
        match (from.is_empty(), to.is_empty()) {
            (true, false) => Ok(Direction::Enable),
            (false, true) => Ok(Direction::Disable),
            (false, false) if from == to => {
                Err("--from and --to are the same key: there is nothing to migrate".into())
            }
            (false, false) => Ok(Direction::Rotate),
            (true, true) => Err("give --to NEW, --from OLD, or both".into()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Direction::Enable => "enable encryption",
            Direction::Disable => "disable encryption",
            Direction::Rotate => "change the encryption key",
        }
    }
}

/// Runs the command and returns the process exit code; messages go to stdout, errors to stderr.
/// Never prints a key or a stored value, only counts and key ids.
pub fn main(args: MigrateKeysArgs) -> i32 {
    let dsn = std::env::var("DATABASE_DSN")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| crate::config::DEFAULT_DATABASE_DSN.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(migrate(args, &dsn)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e) => {
            eprintln!("gpt-load migrate-keys: {e}");
            1
        }
    }
}

async fn migrate(args: MigrateKeysArgs, dsn: &str) -> Result<String, String> {
    let from = args.from.unwrap_or_default();
    let to = args.to.unwrap_or_default();
    let direction = Direction::of(&from, &to)?;
    for warning in strength_warnings("the new encryption key (--to)", &to) {
        eprintln!("warning: {warning}");
    }
    println!("migrate-keys: {}", direction.describe());
    let old = KeyCipher::new(&from);
    let new = KeyCipher::new(&to);
    let store = Store::open(dsn).await.map_err(|e| e.to_string())?;
    if direction == Direction::Enable {
        refuse_encrypted_data(&store, &new).await?;
    }
    let total = check_all_decrypt(&store, &old).await?;
    if total == 0 {
        return Ok("no keys stored: nothing to migrate".into());
    }
    println!("pre-check passed: all {total} keys decrypt with the old key");
    let rewritten = rewrite(&store, old, new).await?;
    Ok(format!(
        "done: {rewritten} keys re-encrypted, read back and verified. Start gpt-load with {}.",
        match direction {
            Direction::Disable => "ENCRYPTION_KEY unset",
            Direction::Enable | Direction::Rotate => "ENCRYPTION_KEY set to the --to key",
        }
    ))
}

/// v1's guard against encrypting twice: a sample of the stored keys must be plain text (their
/// hash is SHA-256 of their value).
async fn refuse_encrypted_data(store: &Store, target: &KeyCipher) -> Result<(), String> {
    let sample = store
        .all_keys_after(i64::MIN, SAMPLE)
        .await
        .map_err(|e| e.to_string())?;
    let plain = KeyCipher::plain();
    let n = sample.len();
    let plain_count = sample
        .iter()
        .filter(|k| plain.owns(&k.key_value, &k.key_hash))
        .count();
    if plain_count == n {
        return Ok(());
    }
    if plain_count > 0 {
        return Err(format!(
            "inconsistent data: {plain_count} of {n} sampled keys are plain text and the \
             others are not; check the database before migrating. Nothing was changed."
        ));
    }
    let owned = sample
        .iter()
        .filter(|k| target.owns(&k.key_value, &k.key_hash))
        .count();
    if owned > 0 {
        return Err(format!(
            "the keys are already encrypted with the --to key ({owned} of {n} sampled keys \
             decrypt with it); migrating again would encrypt them twice. Nothing was changed."
        ));
    }
    Err(format!(
        "the keys are already encrypted (none of {n} sampled keys is plain text): give \
         --from with the ENCRYPTION_KEY they were encrypted with. Nothing was changed."
    ))
}

/// Every stored key must decrypt with `old`; returns how many keys there are.
async fn check_all_decrypt(store: &Store, old: &KeyCipher) -> Result<u64, String> {
    let (mut total, mut failed, mut first_failure) = (0u64, 0u64, None);
    let mut after = i64::MIN;
    loop {
        let keys = store
            .all_keys_after(after, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = keys.last() else { break };
        after = last.id;
        for key in &keys {
            total += 1;
            if let Err(e) = old.decrypt(&key.key_value) {
                failed += 1;
                first_failure.get_or_insert((key.id, e));
            }
        }
    }
    match first_failure {
        None => Ok(total),
        Some((id, e)) => Err(format!(
            "{failed} of {total} keys do not decrypt with {} (first: key id {id}: {e}); \
             check the --from key. Nothing was changed.",
            if old.is_encrypting() {
                "the --from key"
            } else {
                "no key, i.e. are not plain text"
            }
        )),
    }
}

/// Rewrites every key from `old` to `new` in one transaction and verifies the result.
async fn rewrite(store: &Store, old: KeyCipher, new: KeyCipher) -> Result<u64, String> {
    let reader = new.clone();
    let rewrite = move |key: &store::KeyRow| -> Result<NewKey, String> {
        let plain = old.decrypt(&key.key_value).map_err(|e| e.to_string())?;
        Ok(NewKey {
            value: new.encrypt(&plain).map_err(|e| e.to_string())?,
            hash: new.hash(&plain),
        })
    };
    let verify = move |key: &store::KeyRow| -> Result<(), String> {
        let plain = reader.decrypt(&key.key_value).map_err(|e| e.to_string())?;
        if reader.hash(&plain) == key.key_hash {
            Ok(())
        } else {
            Err("the stored hash does not match the new key".into())
        }
    };
    store
        .rewrite_all_keys(BATCH, rewrite, verify)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions() {
        assert_eq!(Direction::of("", "new"), Ok(Direction::Enable));
        assert_eq!(Direction::of("old", ""), Ok(Direction::Disable));
        assert_eq!(Direction::of("old", "new"), Ok(Direction::Rotate));
        assert!(Direction::of("same", "same").is_err());
        assert!(Direction::of("", "").is_err());
    }
}
