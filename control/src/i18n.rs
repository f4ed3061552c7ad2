//! The admin API's three languages (spec §3.1): `Accept-Language`'s first tag picks zh-CN (the
//! default, as in v1), en-US or ja-JP for envelope messages, error messages and the settings
//! metadata. The texts are v1's own (`internal/i18n/locales/*.go`) wherever v1 has one, so the
//! console reads as users know it; ours fill the gaps (settings v1 lacks, reorder, copy).
//!
//! Not for: the proxy's errors (v1 answers those in English), log lines, or the console itself.
//!
//! The language of the request being answered is kept in a task-local ([`scope`]), set once by
//! the `/api` middleware, so an [`crate::api::ApiError`] built deep in a handler is rendered in
//! the caller's language without passing the request around.

use crate::settings::{Category, SettingDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhCn,
    EnUs,
    JaJp,
}

impl Lang {
    /// v1's rule: the first tag of `Accept-Language`; anything not English or Japanese
    /// (including no header) is Chinese.
    pub fn from_accept_language(header: &str) -> Lang {
        let first = header
            .split([',', ';'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if first.starts_with("en") {
            Lang::EnUs
        } else if first.starts_with("ja") {
            Lang::JaJp
        } else {
            Lang::ZhCn
        }
    }

    pub fn of(req: &poem::Request) -> Lang {
        Lang::from_accept_language(req.header("accept-language").unwrap_or(""))
    }

    fn column(self) -> usize {
        match self {
            Lang::ZhCn => 0,
            Lang::EnUs => 1,
            Lang::JaJp => 2,
        }
    }
}

tokio::task_local! {
    static CURRENT: Lang;
}

/// Runs `work` (one `/api` request) with `lang` as the language its errors are rendered in.
pub async fn scope<F: std::future::Future>(lang: Lang, work: F) -> F::Output {
    CURRENT.scope(lang, work).await
}

/// The language of the `/api` request being handled; `None` outside one (then texts stay as
/// they are).
pub fn current() -> Option<Lang> {
    CURRENT.try_with(|lang| *lang).ok()
}

/// The text of message `id` in `lang`. An unknown id comes back as itself: a visible slip in a
/// toast, never a panic.
pub fn t(lang: Lang, id: &str) -> &str {
    MESSAGES
        .iter()
        .find(|(key, _)| *key == id)
        .map_or(id, |(_, texts)| texts[lang.column()])
}

/// `text` with every `{name}` replaced by its value.
pub fn fill(text: &str, args: &[(&str, String)]) -> String {
    args.iter().fold(text.to_string(), |out, (name, value)| {
        out.replace(&format!("{{{name}}}"), value)
    })
}

/// The `lang` text of a fixed English message written in code before it had an id (gettext's
/// model: the English text is the key; compared ignoring case). `None` when there is none.
pub fn translate_english(lang: Lang, english: &str) -> Option<&'static str> {
    MESSAGES
        .iter()
        .find(|(_, texts)| texts[Lang::EnUs.column()].eq_ignore_ascii_case(english))
        .map(|(_, texts)| texts[lang.column()])
}

/// The message id naming an error code in general, put before a detail that has no
/// translation: `参数无效: upstreams: …`.
pub fn code_title(code: &str) -> &'static str {
    match code {
        "VALIDATION_FAILED" => "invalid_param",
        "BAD_REQUEST" => "bad_request",
        "INVALID_JSON" => "invalid_json",
        "NOT_FOUND" => "not_found",
        "DUPLICATE_RESOURCE" => "duplicate_resource",
        "UNAUTHORIZED" => "unauthorized",
        "TASK_IN_PROGRESS" => "task.already_running",
        "DATABASE_ERROR" => "database_error",
        "INTERNAL_SERVER_ERROR" => "internal_error",
        _ => "error",
    }
}

/// A setting's label in `lang`; en-US is the settings table's own `name`.
pub fn setting_name(lang: Lang, def: &SettingDef) -> &'static str {
    setting_texts(lang, def).0
}

/// A setting's description (the console's tooltip) in `lang`.
pub fn setting_description(lang: Lang, def: &SettingDef) -> &'static str {
    setting_texts(lang, def).1
}

fn setting_texts(lang: Lang, def: &SettingDef) -> (&'static str, &'static str) {
    let translated = SETTING_TEXTS
        .iter()
        .find(|(key, _)| *key == def.key)
        .map(|(_, texts)| texts);
    match (lang, translated) {
        (Lang::ZhCn, Some([zh, _])) => *zh,
        (Lang::JaJp, Some([_, ja])) => *ja,
        _ => (def.name, def.description),
    }
}

/// A settings category's title in `lang`; en-US is the settings table's own name.
pub fn category_name(lang: Lang, category: Category) -> &'static str {
    if lang == Lang::EnUs {
        return category.name();
    }
    let id = match category {
        Category::Basic => "config.category.basic",
        Category::Request => "config.category.request",
        Category::Keys => "config.category.key",
    };
    t(lang, id)
}

/// (id, [zh-CN, en-US, ja-JP]). `{name}` marks an argument ([`fill`]).
const MESSAGES: &[(&str, [&str; 3])] = &[
    // Common (v1).
    ("success", ["操作成功", "Operation successful", "操作成功"]),
    ("error", ["操作失败", "Operation failed", "操作失敗"]),
    ("unauthorized", ["未授权", "Unauthorized", "未認証"]),
    ("not_found", ["未找到", "Not found", "見つかりません"]),
    (
        "bad_request",
        ["请求错误", "Bad request", "不正なリクエスト"],
    ),
    (
        "internal_error",
        ["内部错误", "Internal error", "内部エラー"],
    ),
    (
        "invalid_param",
        ["参数无效", "Invalid parameter", "無効なパラメータ"],
    ),
    // Ours: codes v1 renders with a fixed English text.
    (
        "invalid_json",
        ["无效的JSON格式", "Invalid JSON format", "無効なJSON形式"],
    ),
    (
        "duplicate_resource",
        [
            "资源已存在",
            "Resource already exists",
            "リソースが既に存在します",
        ],
    ),
    (
        "database_error",
        ["数据库错误", "Database error", "データベースエラー"],
    ),
    // Authentication (v1).
    (
        "auth.invalid_request",
        [
            "无效的请求格式",
            "Invalid request format",
            "無効なリクエスト形式",
        ],
    ),
    (
        "auth.authentication_successful",
        ["认证成功", "Authentication successful", "認証成功"],
    ),
    (
        "auth.authentication_failed",
        ["认证失败", "Authentication failed", "認証失敗"],
    ),
    // Groups (v1).
    (
        "group.not_found",
        ["分组不存在", "Group not found", "グループが存在しません"],
    ),
    (
        "group.name_exists",
        [
            "分组名称已存在",
            "Group name already exists",
            "グループ名が既に存在します",
        ],
    ),
    (
        "validation.invalid_group_id",
        [
            "无效的分组ID格式",
            "Invalid group ID format",
            "無効なグループID形式",
        ],
    ),
    (
        "validation.invalid_copy_keys_value",
        [
            "无效的copy_keys值。必须是'none'、'valid_only'或'all'",
            "Invalid copy_keys value. Must be 'none', 'valid_only', or 'all'",
            "無効なcopy_keys値。'none'、'valid_only'、'all'のいずれかである必要があります",
        ],
    ),
    // Reorder (v1's en-US and ja-JP; its zh-CN file has none, these are ours).
    (
        "validation.reorder_items_required",
        [
            "排序项不能为空",
            "Reorder items cannot be empty",
            "並び替え項目は空にできません",
        ],
    ),
    (
        "validation.reorder_group_id",
        [
            "排序项包含无效的分组ID",
            "Reorder item contains invalid group ID",
            "並び替え項目に無効なグループIDが含まれています",
        ],
    ),
    (
        "validation.reorder_sort_negative",
        [
            "排序值不能为负数",
            "Sort value cannot be negative",
            "並び順の値は負数にできません",
        ],
    ),
    (
        "validation.reorder_duplicate_group",
        [
            "排序项中存在重复的分组ID: {id}",
            "Duplicate group ID in reorder items: {id}",
            "並び替え項目に重複したグループIDがあります: {id}",
        ],
    ),
    (
        "validation.reorder_group_not_found",
        [
            "排序项包含不存在的分组",
            "Reorder items contain non-existent group",
            "並び替え項目に存在しないグループが含まれています",
        ],
    ),
    (
        "success.groups_reordered",
        [
            "分组排序已保存",
            "Group order saved",
            "グループの並び順を保存しました",
        ],
    ),
    // Keys (v1). `{count}`: how many.
    (
        "success.keys_restored",
        [
            "{count}个密钥已恢复",
            "{count} keys restored",
            "{count}個のキーが復元されました",
        ],
    ),
    (
        "success.invalid_keys_cleared",
        [
            "{count}个无效密钥已清除",
            "{count} invalid keys cleared",
            "{count}個の無効なキーがクリアされました",
        ],
    ),
    (
        "success.all_keys_cleared",
        [
            "{count}个密钥已清除",
            "{count} keys cleared",
            "{count}個のキーがクリアされました",
        ],
    ),
    (
        "success.group_deleted",
        [
            "分组及相关密钥删除成功",
            "Group and related keys deleted successfully",
            "グループと関連キーが正常に削除されました",
        ],
    ),
    (
        "validation.keys_text_empty",
        [
            "密钥文本不能为空",
            "Keys text cannot be empty",
            "キーテキストは空にできません",
        ],
    ),
    (
        "validation.group_id_required",
        [
            "需要提供group_id参数",
            "group_id query parameter is required",
            "group_idクエリパラメータが必要です",
        ],
    ),
    (
        "validation.file_required",
        ["需要上传文件", "File is required", "ファイルが必要です"],
    ),
    (
        "validation.only_txt_supported",
        [
            "仅支持 .txt 文件",
            "Only .txt files are supported",
            ".txtファイルのみサポートされています",
        ],
    ),
    // Tasks (v1).
    (
        "task.validation_started",
        [
            "密钥验证任务已开始",
            "Key validation task started",
            "キー検証タスクが開始されました",
        ],
    ),
    (
        "task.import_started",
        [
            "密钥导入任务已开始",
            "Key import task started",
            "キーインポートタスクが開始されました",
        ],
    ),
    (
        "task.delete_started",
        [
            "密钥删除任务已开始",
            "Key deletion task started",
            "キー削除タスクが開始されました",
        ],
    ),
    (
        "task.already_running",
        [
            "已有任务正在运行",
            "A task is already running",
            "タスクが既に実行中です",
        ],
    ),
    // Dashboard (v1). `{keyType}`, `{length}`, `{pattern}`: the password checks' arguments.
    (
        "dashboard.invalid_keys",
        ["无效密钥数量", "Invalid Keys", "無効なキー"],
    ),
    (
        "dashboard.success_requests",
        ["成功请求", "Success", "成功"],
    ),
    ("dashboard.failed_requests", ["失败请求", "Failed", "失敗"]),
    (
        "dashboard.encryption_key_missing",
        [
            "未设置ENCRYPTION_KEY，敏感数据将明文存储",
            "ENCRYPTION_KEY is not set, sensitive data will be stored in plain text",
            "ENCRYPTION_KEYが設定されていません。機密データがプレーンテキストで保存されます",
        ],
    ),
    (
        "dashboard.encryption_key_recommended",
        [
            "强烈建议设置ENCRYPTION_KEY以加密保护API密钥等敏感数据",
            "It is strongly recommended to set ENCRYPTION_KEY to encrypt sensitive data like API keys",
            "APIキーなどの機密データを暗号化するため、ENCRYPTION_KEYの設定を強く推奨します",
        ],
    ),
    (
        "dashboard.global_proxy_key",
        ["全局代理密钥", "Global Proxy Key", "グローバルプロキシキー"],
    ),
    (
        "dashboard.group_proxy_key",
        ["分组代理密钥", "Group Proxy Key", "グループプロキシキー"],
    ),
    (
        "security.password_too_short",
        [
            "{keyType}长度不足（{length}字符），建议至少16字符",
            "{keyType} is too short ({length} characters), recommend at least 16 characters",
            "{keyType}が短すぎます（{length}文字）。少なくとも16文字を推奨します",
        ],
    ),
    (
        "security.password_short",
        [
            "{keyType}长度偏短（{length}字符），建议32字符以上",
            "{keyType} is short ({length} characters), recommend 32+ characters",
            "{keyType}が短いです（{length}文字）。32文字以上を推奨します",
        ],
    ),
    (
        "security.password_weak_pattern",
        [
            "{keyType}包含常见弱密码模式：{pattern}",
            "{keyType} contains common weak password patterns: {pattern}",
            "{keyType}に一般的な弱いパスワードパターンが含まれています: {pattern}",
        ],
    ),
    (
        "security.password_low_complexity",
        [
            "{keyType}复杂度不足，缺少大小写字母、数字或特殊字符的组合",
            "{keyType} has low complexity, missing combination of upper/lowercase, numbers, or special characters",
            "{keyType}の複雑性が低く、大文字/小文字、数字、特殊文字の組み合わせが不足しています",
        ],
    ),
    (
        "security.password_recommendation_16",
        [
            "使用至少16个字符的强密码，推荐32字符以上",
            "Use a strong password with at least 16 characters, 32+ recommended",
            "少なくとも16文字の強力なパスワードを使用してください。32文字以上を推奨します",
        ],
    ),
    (
        "security.password_recommendation_32",
        [
            "推荐使用32个字符以上的密码以提高安全性",
            "Recommend using passwords with 32+ characters for better security",
            "セキュリティ向上のため32文字以上のパスワードを推奨します",
        ],
    ),
    (
        "security.password_avoid_common",
        [
            "避免使用常见单词，建议使用随机生成的强密码",
            "Avoid common words, suggest using randomly generated strong passwords",
            "一般的な単語は避け、ランダムに生成された強力なパスワードの使用を推奨します",
        ],
    ),
    (
        "security.password_complexity",
        [
            "建议包含大小写字母、数字和特殊字符以提高密码强度",
            "Suggest including upper/lowercase letters, numbers and special characters to improve password strength",
            "パスワード強度を向上させるため、大文字/小文字、数字、特殊文字を含めることを推奨します",
        ],
    ),
    // Settings categories (v1); en-US is the settings table's.
    ("config.category.basic", ["基础参数", "Basic", "基本設定"]),
    (
        "config.category.request",
        ["请求设置", "Request Settings", "リクエスト設定"],
    ),
    (
        "config.category.key",
        ["密钥配置", "Key Configuration", "キー設定"],
    ),
];

/// A setting's (name, description) in one language.
type SettingText = (&'static str, &'static str);

/// Setting key → [zh-CN, ja-JP]; en-US is the settings table's. v1's texts, except where our
/// behaviour differs: `blacklist_threshold` counts failures cumulatively (as v1 does; its docs
/// were corrected in v1.4.9), `proxy_url` also takes SOCKS5, and the settings v1 has no text
/// for (`stream_idle_timeout`, `failover_status_codes`).
const SETTING_TEXTS: &[(&str, [SettingText; 2])] = &[
    (
        "app_url",
        [
            (
                "项目地址",
                "项目的基础 URL，用于拼接分组终端节点地址。系统配置优先于环境变量 APP_URL。",
            ),
            (
                "アプリケーションURL",
                "アプリケーションのベースURL。グループエンドポイントアドレスの構築に使用されます。システム設定が環境変数APP_URLより優先されます。",
            ),
        ],
    ),
    (
        "proxy_keys",
        [
            (
                "全局代理密钥",
                "全局代理密钥，用于访问所有分组的代理端点。多个密钥请用逗号分隔。",
            ),
            (
                "グローバルプロキシキー",
                "すべてのグループプロキシエンドポイントにアクセスするためのグローバルプロキシキー。複数のキーはカンマで区切ります。",
            ),
        ],
    ),
    (
        "request_log_retention_days",
        [
            (
                "日志保留时长（天）",
                "请求日志在数据库中的保留天数，0为不清理日志。",
            ),
            (
                "ログ保存期間（日）",
                "データベースにリクエストログを保持する日数、0でログを永久保存。",
            ),
        ],
    ),
    (
        "request_log_write_interval_minutes",
        [
            (
                "日志延迟写入周期（分钟）",
                "请求日志从缓存写入数据库的周期（分钟），0为实时写入数据。",
            ),
            (
                "ログ書き込み間隔（分）",
                "リクエストログをキャッシュからデータベースに書き込む間隔（分）、0でリアルタイム書き込み。",
            ),
        ],
    ),
    (
        "enable_request_body_logging",
        [
            (
                "启用日志详情",
                "是否在请求日志中记录完整的请求体内容。启用此功能会增加内存以及存储空间的占用。",
            ),
            (
                "リクエストボディログを有効化",
                "完全なリクエストボディの内容をログに記録するかどうか。有効にするとメモリとストレージの使用量が増加します。",
            ),
        ],
    ),
    (
        "request_timeout",
        [
            ("请求超时（秒）", "转发请求的完整生命周期超时（秒）。"),
            (
                "リクエストタイムアウト（秒）",
                "転送リクエストの完全なライフサイクルタイムアウト（秒）。",
            ),
        ],
    ),
    (
        "connect_timeout",
        [
            ("连接超时（秒）", "与上游服务建立新连接的超时时间（秒）。"),
            (
                "接続タイムアウト（秒）",
                "上流サービスへの新しい接続を確立するためのタイムアウト（秒）。",
            ),
        ],
    ),
    (
        "idle_conn_timeout",
        [
            (
                "空闲连接超时（秒）",
                "HTTP 客户端中空闲连接的超时时间（秒）。",
            ),
            (
                "アイドル接続タイムアウト（秒）",
                "HTTPクライアントのアイドル接続のタイムアウト（秒）。",
            ),
        ],
    ),
    (
        "response_header_timeout",
        [
            ("响应头超时（秒）", "等待上游服务响应头的最长时间（秒）。"),
            (
                "レスポンスヘッダータイムアウト（秒）",
                "上流サービスからのレスポンスヘッダーを待つ最大時間（秒）。",
            ),
        ],
    ),
    (
        "stream_idle_timeout",
        [
            (
                "流式空闲超时（秒）",
                "流式响应相邻两个数据块之间允许的最长静默时间（秒），超时即断开；0为不限制。",
            ),
            (
                "ストリームアイドルタイムアウト（秒）",
                "ストリーミングレスポンスのチャンク間で許容される最大の無通信時間（秒）。超えると切断します。0で無制限。",
            ),
        ],
    ),
    (
        "max_idle_conns",
        [
            (
                "最大空闲连接数",
                "HTTP 客户端连接池中允许的最大空闲连接总数。",
            ),
            (
                "最大アイドル接続数",
                "HTTPクライアント接続プールで許可される最大アイドル接続総数。",
            ),
        ],
    ),
    (
        "max_idle_conns_per_host",
        [
            (
                "每主机最大空闲连接数",
                "HTTP 客户端连接池对每个上游主机允许的最大空闲连接数。",
            ),
            (
                "ホストごとの最大アイドル接続数",
                "HTTPクライアント接続プールで各上流ホストに許可される最大アイドル接続数。",
            ),
        ],
    ),
    (
        "proxy_url",
        [
            (
                "代理服务器地址",
                "全局 HTTP/HTTPS/SOCKS5 代理服务器地址，例如：http://user:pass@host:port。如果为空，则使用环境变量配置。",
            ),
            (
                "プロキシサーバーURL",
                "グローバルHTTP/HTTPS/SOCKS5プロキシサーバーURL。例：http://user:pass@host:port。空の場合は環境変数設定を使用。",
            ),
        ],
    ),
    (
        "max_retries",
        [
            (
                "最大重试次数",
                "单个请求使用不同 Key 的最大重试次数，0为不重试。",
            ),
            (
                "最大リトライ数",
                "異なるキーを使用した単一リクエストの最大リトライ数、0でリトライなし。",
            ),
        ],
    ),
    (
        "blacklist_threshold",
        [
            (
                "黑名单阈值",
                "一个 Key 累计失败多少次后进入黑名单，0为不拉黑。",
            ),
            (
                "ブラックリストしきい値",
                "キーがブラックリストに入るまでの累計失敗回数、0でブラックリスト無効。",
            ),
        ],
    ),
    (
        "failover_status_codes",
        [
            (
                "故障转移状态码",
                "触发重试并计入 Key 失败次数的上游状态码，例如 400-403,405-999。",
            ),
            (
                "フェイルオーバーステータスコード",
                "リトライし、キーの失敗回数に数える上流ステータスコード。例：400-403,405-999。",
            ),
        ],
    ),
    (
        "key_validation_interval_minutes",
        [
            ("密钥验证间隔（分钟）", "后台验证密钥的默认间隔（分钟）。"),
            (
                "キー検証間隔（分）",
                "バックグラウンドキー検証のデフォルト間隔（分）。",
            ),
        ],
    ),
    (
        "key_validation_concurrency",
        [
            (
                "密钥验证并发数",
                "后台定时验证无效 Key 时的并发数，如果使用SQLite或者运行环境性能不佳，请尽量保证20以下，避免过高的并发导致数据不一致问题。",
            ),
            (
                "キー検証並行数",
                "バックグラウンドで無効なキーを検証する際の並行数。SQLiteや低性能環境では20以下を維持し、データ不整合を回避してください。",
            ),
        ],
    ),
    (
        "key_validation_timeout_seconds",
        [
            (
                "密钥验证超时（秒）",
                "后台定时验证单个 Key 时的 API 请求超时时间（秒）。",
            ),
            (
                "キー検証タイムアウト（秒）",
                "バックグラウンドで単一キーを検証する際のAPIリクエストタイムアウト（秒）。",
            ),
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SETTINGS;

    #[test]
    fn first_tag_picks_the_language() {
        assert_eq!(Lang::from_accept_language(""), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Lang::EnUs);
        assert_eq!(Lang::from_accept_language("ja-JP"), Lang::JaJp);
        assert_eq!(Lang::from_accept_language("fr-FR, en;q=0.5"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("EN"), Lang::EnUs);
    }

    #[test]
    fn messages_have_three_texts_and_unique_ids() {
        let mut ids: Vec<&str> = MESSAGES.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), MESSAGES.len(), "duplicate message id");
        for (id, texts) in MESSAGES {
            assert!(texts.iter().all(|t| !t.is_empty()), "{id}");
        }
        for code in ["VALIDATION_FAILED", "TASK_IN_PROGRESS", "NOT_FOUND", "X"] {
            assert_ne!(t(Lang::ZhCn, code_title(code)), code_title(code));
        }
    }

    #[test]
    fn every_setting_and_only_settings_have_texts() {
        for def in SETTINGS {
            assert!(
                SETTING_TEXTS.iter().any(|(key, _)| *key == def.key),
                "no zh-CN/ja-JP text for setting {}",
                def.key
            );
        }
        for (key, _) in SETTING_TEXTS {
            assert!(
                SETTINGS.iter().any(|d| d.key == *key),
                "{key} is no setting"
            );
        }
        let retries = crate::settings::find("max_retries").unwrap();
        assert_eq!(setting_name(Lang::ZhCn, retries), "最大重试次数");
        assert_eq!(setting_name(Lang::EnUs, retries), "Max Retries");
        assert_eq!(category_name(Lang::JaJp, Category::Keys), "キー設定");
        assert_eq!(
            category_name(Lang::EnUs, Category::Keys),
            "Key Configuration"
        );
    }

    #[test]
    fn lookup_fill_and_english_keys() {
        assert_eq!(t(Lang::EnUs, "success"), "Operation successful");
        assert_eq!(t(Lang::ZhCn, "no.such.id"), "no.such.id");
        assert_eq!(
            fill(
                t(Lang::EnUs, "validation.reorder_duplicate_group"),
                &[("id", "7".into())]
            ),
            "Duplicate group ID in reorder items: 7"
        );
        assert_eq!(
            translate_english(Lang::ZhCn, "group not found"),
            Some("分组不存在")
        );
        assert_eq!(translate_english(Lang::ZhCn, "something else"), None);
    }
}
