//! Encryption at rest (spec §7, §5.1 ENCRYPTION_KEY): upstream keys stored as v1's AES-GCM hex
//! ciphertext with HMAC lookup hashes, a database GPT-Load v1 encrypted opening as is,
//! `gpt-load migrate-keys` turning encryption on, to another key and off again (refusing what
//! would lose data), and the dashboard's mismatch check. Never a secret in the server's output.

mod common;

use std::path::Path;
use std::process::Command;

use common::{AUTH_KEY, Server, chat, chat_path};
use mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// The ENCRYPTION_KEY the constants below were made with.
const ENCRYPTION_KEY: &str = "Xr7-Tq2m-Lp9w-Vc4n-Hd8s-Jf3b";
/// Another key, for rotation and the wrong-key cases.
const OTHER_KEY: &str = "Wb5-Zk8r-Nm2x-Qs6t-Gy4h-Pe9c";

/// Upstream keys with, for [`ENCRYPTION_KEY`], a ciphertext as v1 writes it and v1's lookup
/// hash. Made independently of our code, with Python's hashlib (PBKDF2-HMAC-SHA256, salt
/// `gpt-load-encryption-v1`, 100,000 rounds; HMAC-SHA256) and the `cryptography` package's
/// AESGCM (random 12-byte nonce; hex of nonce ‖ ciphertext ‖ tag).
const ACTIVE_ONE: (&str, &str, &str) = (
    "sk-v1enc-active-one-Qw12",
    "229110dd9f63433934d458296d017aa2410f183c0ce8877b75fe2297db3f3549db931274366bd259c23e1505c60555d286c2bbe9",
    "09725112d10ca28f223d12d630504ee35455fe37b6c3e60305313fc89708a2d1",
);
const ACTIVE_TWO: (&str, &str, &str) = (
    "sk-v1enc-active-two-Er34",
    "6dd0a5b23f6ce8f4d3d4b8e889f8e22215c9ff80cac842bef470fae248e21193565240af99eafe15dd473e47cd2d7e946a23e987",
    "1f5ca512cc9d74f2dd19c5ce428f42867629b98ab35bfad1f33500e0268773b9",
);
const INVALID: (&str, &str, &str) = (
    "sk-v1enc-invalid-Ty56",
    "d856913e533f41db6418175cb4a53c37daf16dc9867fc06a6b3b1882e95122d76fd478d91556e105df8847b20d3e2d8ddc",
    "a29ee5bc30b131788f8e7590d2ed7caad4cb2fff01681f1130b3350638774f6b",
);
const KEYS: [(&str, &str, &str); 3] = [ACTIVE_ONE, ACTIVE_TWO, INVALID];

fn plain(key: (&'static str, &'static str, &'static str)) -> &'static str {
    key.0
}

/// v1's hash without ENCRYPTION_KEY: SHA-256, hex.
fn sha256(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The HMAC `key_hash` of a plaintext key under [`ENCRYPTION_KEY`] (from the constants).
fn hmac_of(key: &str) -> &'static str {
    KEYS.iter().find(|k| k.0 == key).expect("a known key").2
}

/// What v1's AES-GCM hex looks like for `plaintext`: lower-case hex of 12 + len + 16 bytes.
fn looks_encrypted(stored: &str, plaintext: &str) -> bool {
    stored.len() == 2 * (12 + plaintext.len() + 16)
        && stored
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The upstream key of every request [`chat`] sent through the proxy (not key validation's).
fn proxied_keys(mock: &MockUpstream) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.try_json().is_ok_and(|b| b["model"] == "gpt-4o-mini"))
        .map(|r| r.upstream_key().unwrap_or_default())
        .collect()
}

/// `(id, key_value, key_hash)` of every stored key.
fn stored_keys(db_path: &Path) -> Vec<(i64, String, String)> {
    let db = rusqlite::Connection::open(db_path).expect("open db");
    let mut stmt = db
        .prepare("SELECT id, key_value, key_hash FROM api_keys ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn listed_values(items: &[Value]) -> Vec<String> {
    let mut values: Vec<String> = items
        .iter()
        .map(|k| k["key_value"].as_str().unwrap_or_default().to_string())
        .collect();
    values.sort();
    values
}

async fn encryption_status(server: &Server, language: &str) -> Value {
    let resp = server
        .client
        .get(server.url("/api/dashboard/encryption-status"))
        .bearer_auth(AUTH_KEY)
        .header("accept-language", language)
        .send()
        .await
        .expect("status request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("status body");
    assert_eq!(body["code"], 0, "{body}");
    body["data"].clone()
}

/// Runs `gpt-load migrate-keys ARGS` on `dir`'s database; returns (success, stdout + stderr).
fn migrate_keys(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gpt-load"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_DSN", dir.join("data/gpt-load.db"))
        .arg("migrate-keys")
        .args(args)
        .output()
        .expect("run migrate-keys");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[track_caller]
fn assert_free_of_secrets(output: &str) {
    for secret in [
        ENCRYPTION_KEY,
        OTHER_KEY,
        ACTIVE_ONE.0,
        ACTIVE_TWO.0,
        INVALID.0,
    ] {
        assert!(!output.contains(secret), "'{secret}' in:\n{output}");
    }
}

// ---- keys added through the API -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_stored_encrypted_and_served_in_clear() {
    let mock = MockUpstream::start().await;
    let mut server = Server::start_with(&[("ENCRYPTION_KEY", ENCRYPTION_KEY)]).await;
    let group = server
        .create_group("enc", "openai", &mock.url(), json!({}))
        .await;
    server
        .add_keys(group, &[plain(ACTIVE_ONE), plain(ACTIVE_TWO)])
        .await;

    // At rest: v1's ciphertext and HMAC, never the key.
    let rows = stored_keys(&server.db_path());
    assert_eq!(rows.len(), 2);
    for (_, value, hash) in &rows {
        let key = [ACTIVE_ONE, ACTIVE_TWO]
            .into_iter()
            .find(|k| k.2 == hash)
            .unwrap_or_else(|| panic!("hash {hash} is v1's HMAC of one of the keys"));
        assert!(looks_encrypted(value, key.0), "stored value {value}");
        assert!(!value.contains(key.0));
    }

    // In clear for the admin and for the upstream.
    let items = server.list_keys(group).await;
    assert_eq!(
        listed_values(&items),
        [plain(ACTIVE_ONE), plain(ACTIVE_TWO)]
    );
    for _ in 0..4 {
        let resp = server.proxy_post(&chat_path("enc"), chat()).await;
        assert_eq!(resp.status(), 200);
    }
    let mut used = proxied_keys(&mock);
    used.sort();
    used.dedup();
    assert_eq!(used, [plain(ACTIVE_ONE), plain(ACTIVE_TWO)]);

    // Dedupe, search and delete go by the HMAC hash, though every ciphertext differs.
    let body = json!({"group_id": group, "keys_text": format!("{}\n{}", plain(ACTIVE_ONE), plain(INVALID))});
    let (status, added) = server
        .api("POST", "/api/keys/add-multiple", Some(body))
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["data"]["added_count"], 1, "{added}");
    assert_eq!(added["data"]["ignored_count"], 1, "{added}");
    let path = format!("/api/keys?group_id={group}&key_value={}", plain(ACTIVE_TWO));
    let (_, found) = server.api("GET", &path, None).await;
    assert_eq!(found["data"]["pagination"]["total_items"], 1, "{found}");
    assert_eq!(found["data"]["items"][0]["key_value"], plain(ACTIVE_TWO));
    assert_eq!(
        found["data"]["items"][0]["key_hash"],
        hmac_of(plain(ACTIVE_TWO))
    );
    let body = json!({"group_id": group, "keys_text": plain(INVALID)});
    let (_, deleted) = server
        .api("POST", "/api/keys/delete-multiple", Some(body))
        .await;
    assert_eq!(deleted["data"]["deleted_count"], 1, "{deleted}");

    let status = encryption_status(&server, "en").await;
    assert_eq!(status["has_mismatch"], false, "{status}");
    assert_eq!(status["scenario_type"], "");

    assert!(server.stop().await.success());
    server.assert_logs_free_of(&[ENCRYPTION_KEY, plain(ACTIVE_ONE), plain(ACTIVE_TWO)]);

    // request_logs.key_value: the same scheme as api_keys, the hash the key's own.
    let db = server.db();
    let mut stmt = db
        .prepare("SELECT key_value, key_hash FROM request_logs")
        .unwrap();
    let logs: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(logs.len(), 4);
    for (value, hash) in &logs {
        let key = [ACTIVE_ONE, ACTIVE_TWO]
            .into_iter()
            .find(|k| k.2 == hash)
            .unwrap_or_else(|| panic!("log hash {hash} is a key's HMAC"));
        assert!(looks_encrypted(value, key.0), "log key_value {value}");
    }
}

// ---- a database GPT-Load v1 encrypted -------------------------------------------------------

/// v1's DDL as GORM creates it, shared with the store's tests.
const V1_FIXTURE: &str = include_str!("../../store/tests/fixtures/gorm_v1_sqlite.sql");

/// Builds `dir/data/gpt-load.db` as v1 leaves it with ENCRYPTION_KEY set: one group on
/// `upstream`, two active keys and one invalid, stored as `value` picks from [`KEYS`].
fn write_v1_database(dir: &Path, upstream: &str, value: impl Fn(&(&str, &str, &str)) -> String) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let db = rusqlite::Connection::open(dir.join("data/gpt-load.db")).unwrap();
    let ddl: Vec<&str> = V1_FIXTURE
        .lines()
        .filter(|l| l.starts_with("CREATE "))
        .collect();
    assert!(ddl.len() >= 6, "the fixture still holds v1's DDL");
    db.execute_batch(&ddl.join("\n")).unwrap();
    let t = "2025-09-01 12:00:00.123456789+08:00";
    db.execute_batch(&format!(
        "INSERT INTO `groups` (`id`,`name`,`display_name`,`proxy_keys`,`description`,`group_type`,`upstreams`,`validation_endpoint`,`channel_type`,`sort`,`test_model`,`param_overrides`,`config`,`header_rules`,`model_redirect_rules`,`model_redirect_strict`,`last_validated_at`,`created_at`,`updated_at`) VALUES
          (7,'sealed','Sealed','gk-sealed','','standard','[{{\"url\":\"{upstream}\",\"weight\":1}}]','','openai',0,'gpt-4.1-nano',NULL,'{{}}','[]',NULL,0,NULL,'{t}','{t}');"
    ))
    .unwrap();
    for (id, key) in KEYS.iter().enumerate() {
        let status = if key.0 == INVALID.0 {
            "invalid"
        } else {
            "active"
        };
        let hash = if value(key) == key.0 {
            sha256(key.0)
        } else {
            key.2.to_string()
        };
        db.execute(
            "INSERT INTO `api_keys` (`id`,`key_value`,`key_hash`,`group_id`,`status`,`notes`,`request_count`,`failure_count`,`created_at`,`updated_at`) \
             VALUES (?1, ?2, ?3, 7, ?4, '', 0, 0, ?5, ?5)",
            rusqlite::params![id as i64 + 1, value(key), hash, status, t],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_v1_encrypted_opens_and_serves() {
    let mock = MockUpstream::start().await;
    mock.fail_key(INVALID.0, 401, r#"{"error":{"message":"revoked"}}"#);
    let tmp = tempfile::tempdir().unwrap();
    write_v1_database(tmp.path(), &mock.url(), |k| k.1.to_string());
    let mut server = Server::start_in(tmp.path(), &[("ENCRYPTION_KEY", ENCRYPTION_KEY)]).await;

    let items = server.list_keys(7).await;
    assert_eq!(listed_values(&items), {
        let mut v = KEYS.map(|k| k.0.to_string()).to_vec();
        v.sort();
        v
    });
    let path = format!("/api/keys?group_id=7&key_value={}", plain(ACTIVE_TWO));
    let (_, found) = server.api("GET", &path, None).await;
    assert_eq!(
        found["data"]["pagination"]["total_items"], 1,
        "v1's HMAC finds it: {found}"
    );

    for _ in 0..4 {
        let resp = server
            .proxy_post_as("gk-sealed", &chat_path("sealed"), chat())
            .await;
        assert_eq!(resp.status(), 200);
    }
    let used = proxied_keys(&mock);
    assert_eq!(used.len(), 4);
    assert!(
        used.iter()
            .all(|k| k == plain(ACTIVE_ONE) || k == plain(ACTIVE_TWO)),
        "decrypted active keys only: {used:?}"
    );
    let status = encryption_status(&server, "en").await;
    assert_eq!(status["has_mismatch"], false, "{status}");

    assert!(server.stop().await.success());
    server.assert_logs_free_of(&[ENCRYPTION_KEY, plain(ACTIVE_ONE), plain(ACTIVE_TWO)]);
    let counted: i64 = server
        .db()
        .query_row(
            "SELECT SUM(request_count) FROM api_keys WHERE group_id = 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        counted, 4,
        "log hashes match the stored HMACs, so usage is counted"
    );
}

// ---- migrate-keys ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn migrate_keys_enables_rotates_and_disables() {
    let mock = MockUpstream::start().await;
    mock.fail_key(INVALID.0, 401, r#"{"error":{"message":"revoked"}}"#);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_v1_database(dir, &mock.url(), |k| k.0.to_string());
    let db_path = dir.join("data/gpt-load.db");
    let plaintext = stored_keys(&db_path);
    assert!(plaintext.iter().all(|(_, v, h)| *h == sha256(v)));

    // Refusals change nothing: a wrong --from on plain data, the same key twice.
    let (ok, out) = migrate_keys(dir, &["--from", OTHER_KEY, "--to", ENCRYPTION_KEY]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("do not decrypt") && out.contains("Nothing was changed"),
        "{out}"
    );
    let (ok, out) = migrate_keys(dir, &["--from", OTHER_KEY, "--to", OTHER_KEY]);
    assert!(!ok && out.contains("the same key"), "{out}");
    assert_eq!(stored_keys(&db_path), plaintext);

    // Enable: v1's ciphertexts and HMACs.
    let (ok, out) = migrate_keys(dir, &["--to", ENCRYPTION_KEY]);
    assert!(ok, "{out}");
    assert!(out.contains("3 keys re-encrypted"), "{out}");
    assert_free_of_secrets(&out);
    let enabled = stored_keys(&db_path);
    for ((id, value, hash), (old_id, old_value, _)) in enabled.iter().zip(&plaintext) {
        assert_eq!(id, old_id);
        assert!(looks_encrypted(value, old_value), "{value}");
        assert_eq!(hash, hmac_of(old_value), "v1's HMAC of key {id}");
    }

    // Enabling again would encrypt twice: refused, nothing changed.
    let (ok, out) = migrate_keys(dir, &["--to", ENCRYPTION_KEY]);
    assert!(!ok, "{out}");
    assert!(out.contains("already encrypted with the --to key"), "{out}");
    let (ok, out) = migrate_keys(dir, &["--to", OTHER_KEY]);
    assert!(!ok && out.contains("already encrypted"), "{out}");
    // A wrong --from for encrypted data.
    let (ok, out) = migrate_keys(dir, &["--from", OTHER_KEY]);
    assert!(!ok && out.contains("do not decrypt"), "{out}");
    assert_eq!(stored_keys(&db_path), enabled);

    // Rotate, then serve with the new key.
    let (ok, out) = migrate_keys(dir, &["--from", ENCRYPTION_KEY, "--to", OTHER_KEY]);
    assert!(ok, "{out}");
    assert_free_of_secrets(&out);
    let rotated = stored_keys(&db_path);
    for ((_, value, hash), (_, old_value, old_hash)) in rotated.iter().zip(&enabled) {
        assert_ne!(value, old_value);
        assert_ne!(hash, old_hash, "the HMAC is keyed: a new key, new hashes");
    }
    let mut server = Server::start_in(dir, &[("ENCRYPTION_KEY", OTHER_KEY)]).await;
    let items = server.list_keys(7).await;
    assert_eq!(listed_values(&items).len(), 3);
    assert!(listed_values(&items).contains(&plain(ACTIVE_ONE).to_string()));
    let path = format!("/api/keys?group_id=7&key_value={}", plain(ACTIVE_ONE));
    let (_, found) = server.api("GET", &path, None).await;
    assert_eq!(found["data"]["pagination"]["total_items"], 1, "{found}");
    let resp = server
        .proxy_post_as("gk-sealed", &chat_path("sealed"), chat())
        .await;
    assert_eq!(resp.status(), 200);
    let used = proxied_keys(&mock).pop();
    assert!(
        used.as_deref() == Some(plain(ACTIVE_ONE)) || used.as_deref() == Some(plain(ACTIVE_TWO)),
        "{used:?}"
    );
    assert!(server.stop().await.success());
    server.assert_logs_free_of(&[OTHER_KEY, plain(ACTIVE_ONE), plain(ACTIVE_TWO)]);

    // Disable: back to plain text and SHA-256, as at the start.
    let (ok, out) = migrate_keys(dir, &["--from", OTHER_KEY]);
    assert!(ok, "{out}");
    assert_free_of_secrets(&out);
    assert_eq!(stored_keys(&db_path), plaintext);
    let mut server = Server::start_in(dir, &[]).await;
    assert_eq!(listed_values(&server.list_keys(7).await).len(), 3);
    let status = encryption_status(&server, "en").await;
    assert_eq!(status["has_mismatch"], false, "{status}");
    assert!(server.stop().await.success());
}

#[test]
fn migrate_keys_needs_a_direction_and_says_to_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, out) = migrate_keys(tmp.path(), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("--from") && out.contains("--to"), "{out}");
    let (ok, help) = migrate_keys(tmp.path(), &["--help"]);
    assert!(ok, "{help}");
    assert!(help.contains("Stop gpt-load"), "{help}");
    assert!(help.contains("--from OLD --to NEW"), "{help}");
}

// ---- the dashboard's mismatch check ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn encryption_status_tells_each_mismatch() {
    let mock = MockUpstream::start().await;
    mock.fail_key(INVALID.0, 401, r#"{"error":{"message":"revoked"}}"#);
    let cases: [(&str, bool, Option<&str>, &str); 4] = [
        // (name, data encrypted with ENCRYPTION_KEY, ENCRYPTION_KEY of the server, scenario)
        ("plain, no key", false, None, ""),
        (
            "plain, key set",
            false,
            Some(ENCRYPTION_KEY),
            "data_not_encrypted",
        ),
        ("encrypted, no key", true, None, "key_not_configured"),
        (
            "encrypted, wrong key",
            true,
            Some(OTHER_KEY),
            "key_mismatch",
        ),
    ];
    for (name, encrypted, key, scenario) in cases {
        let tmp = tempfile::tempdir().unwrap();
        write_v1_database(tmp.path(), &mock.url(), |k| {
            if encrypted { k.1 } else { k.0 }.to_string()
        });
        let env: Vec<(&str, &str)> = key.map(|k| ("ENCRYPTION_KEY", k)).into_iter().collect();
        let mut server = Server::start_in(tmp.path(), &env).await;
        let status = encryption_status(&server, "en-US,en;q=0.9").await;
        assert_eq!(status["scenario_type"], scenario, "{name}: {status}");
        assert_eq!(
            status["has_mismatch"],
            !scenario.is_empty(),
            "{name}: {status}"
        );
        if scenario.is_empty() {
            assert_eq!(status["message"], "", "{name}");
        } else {
            assert!(
                status["message"]
                    .as_str()
                    .unwrap()
                    .contains("ENCRYPTION_KEY"),
                "{name}: {status}"
            );
            assert!(!status["suggestion"].as_str().unwrap().is_empty(), "{name}");
            server.wait_for_log("migrate-keys").await;
            let chinese = encryption_status(&server, "zh-CN").await;
            assert_ne!(chinese["message"], status["message"], "v1's zh-CN default");
        }
        if scenario == "data_not_encrypted" {
            // v1's compatibility: plain keys still serve while ENCRYPTION_KEY is set.
            let resp = server
                .proxy_post_as("gk-sealed", &chat_path("sealed"), chat())
                .await;
            assert_eq!(resp.status(), 200, "{name}");
            let used = proxied_keys(&mock).pop();
            assert!(
                used.as_deref() == Some(plain(ACTIVE_ONE))
                    || used.as_deref() == Some(plain(ACTIVE_TWO)),
                "{used:?}"
            );
        }
        if scenario == "key_mismatch" {
            let items = server.list_keys(7).await;
            assert!(
                items.iter().all(|k| k["key_value"] == "failed-to-decrypt"),
                "v1 shows what it cannot decrypt as failed-to-decrypt: {items:?}"
            );
        }
        assert!(server.stop().await.success());
        server.assert_logs_free_of(&[
            ENCRYPTION_KEY,
            OTHER_KEY,
            plain(ACTIVE_ONE),
            plain(ACTIVE_TWO),
        ]);
    }
}
