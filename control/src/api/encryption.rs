//! `GET /api/dashboard/encryption-status` (spec §3.3, §7): whether the stored keys are
//! encrypted the way ENCRYPTION_KEY says, from v1's 20-key sample, with v1's texts so the
//! console's banner reads as users know it.

use std::sync::Arc;

use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::json;

use super::{ApiResult, ok};
use crate::app::App;
use crate::encryption::{Mismatch, check_stored_keys};
use crate::i18n::Lang;

#[handler]
pub async fn status(app: Data<&Arc<App>>, req: &Request) -> ApiResult<Response> {
    let data = match check_stored_keys(&app.store, &app.cipher).await? {
        None => {
            json!({"has_mismatch": false, "scenario_type": "", "message": "", "suggestion": ""})
        }
        Some(mismatch) => {
            let (message, suggestion) = texts(mismatch, Lang::of(req));
            json!({
                "has_mismatch": true, "scenario_type": mismatch.scenario(),
                "message": message, "suggestion": suggestion,
            })
        }
    };
    Ok(ok(req, data))
}

/// v1's message and suggestion (`dashboard.*` in its locales) for a mismatch.
fn texts(mismatch: Mismatch, lang: Lang) -> (&'static str, &'static str) {
    let [zh, en, ja] = match mismatch {
        Mismatch::DataNotEncrypted => [
            (
                "检测到您已配置 ENCRYPTION_KEY，但数据库中的密钥尚未加密。这会导致密钥无法正常读取（显示为 failed-to-decrypt）。",
                "请停止服务，执行密钥迁移命令后重启",
            ),
            (
                "ENCRYPTION_KEY is configured but the keys in database are not encrypted. This will cause keys to be unreadable (shown as failed-to-decrypt).",
                "Please stop the service, run the key migration command and restart",
            ),
            (
                "ENCRYPTION_KEYは設定されていますが、データベース内のキーは暗号化されていません。これによりキーが読み取り不能になります（failed-to-decryptと表示）。",
                "サービスを停止し、キー移行コマンドを実行してから再起動してください",
            ),
        ],
        Mismatch::KeyNotConfigured => [
            (
                "检测到数据库中的密钥已加密，但未配置 ENCRYPTION_KEY。这会导致密钥无法正常读取。",
                "请配置与加密时相同的 ENCRYPTION_KEY，或执行解密迁移",
            ),
            (
                "Keys in database are encrypted but ENCRYPTION_KEY is not configured. This will cause keys to be unreadable.",
                "Please configure the same ENCRYPTION_KEY used for encryption, or run decryption migration",
            ),
            (
                "データベース内のキーは暗号化されていますが、ENCRYPTION_KEYが設定されていません。これによりキーが読み取り不能になります。",
                "暗号化時に使用した同じENCRYPTION_KEYを設定するか、復号化移行を実行してください",
            ),
        ],
        Mismatch::WrongKey => [
            (
                "检测到您配置的 ENCRYPTION_KEY 与数据加密时使用的密钥不匹配。这会导致密钥解密失败（显示为 failed-to-decrypt）。",
                "请使用正确的 ENCRYPTION_KEY，或执行密钥迁移",
            ),
            (
                "The configured ENCRYPTION_KEY does not match the key used for encryption. This will cause decryption to fail (shown as failed-to-decrypt).",
                "Please use the correct ENCRYPTION_KEY, or run key migration",
            ),
            (
                "設定されたENCRYPTION_KEYが暗号化時に使用されたキーと一致しません。これにより復号化が失敗します（failed-to-decryptと表示）。",
                "正しいENCRYPTION_KEYを使用するか、キー移行を実行してください",
            ),
        ],
    };
    match lang {
        Lang::ZhCn => zh,
        Lang::EnUs => en,
        Lang::JaJp => ja,
    }
}
