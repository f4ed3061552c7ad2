//! The dashboard's security warnings (v1's `getSecurityWarnings`, spec §7): AUTH_KEY,
//! ENCRYPTION_KEY and every global and group proxy key run through v1's password checks, with
//! v1's texts in the caller's language.
//!
//! v1 also warns when AUTH_KEY is empty; this build refuses to start without one, so that
//! warning cannot occur.

use serde_json::{Value, json};

use crate::config::Config;
use crate::i18n::{Lang, fill, t};
use crate::state::Model;

/// v1's list, in v1's order: only the first pattern found is reported.
const WEAK_PATTERNS: [&str; 18] = [
    "password",
    "123456",
    "admin",
    "secret",
    "test",
    "demo",
    "sk-123456",
    "key",
    "token",
    "pass",
    "pwd",
    "qwerty",
    "abc",
    "default",
    "user",
    "login",
    "auth",
    "temp",
];

fn warning(kind: &str, message: String, severity: &str, suggestion: &str) -> Value {
    json!({"type": kind, "message": message, "severity": severity, "suggestion": suggestion})
}

/// Every warning, in v1's order: AUTH_KEY, ENCRYPTION_KEY, global proxy keys, then each
/// group's proxy keys in group id order.
pub fn security_warnings(config: &Config, model: &Model, lang: Lang) -> Vec<Value> {
    let mut warnings = check_password(lang, &config.auth_key, "AUTH_KEY");
    if config.encryption_key.is_empty() {
        warnings.push(warning(
            "ENCRYPTION_KEY",
            t(lang, "dashboard.encryption_key_missing").to_string(),
            "high",
            t(lang, "dashboard.encryption_key_recommended"),
        ));
    } else {
        warnings.extend(check_password(
            lang,
            &config.encryption_key,
            "ENCRYPTION_KEY",
        ));
    }
    let global = t(lang, "dashboard.global_proxy_key");
    warnings.extend(proxy_key_warnings(
        lang,
        model.settings.get("proxy_keys"),
        |n| format!("{global} #{n}"),
    ));
    let group = t(lang, "dashboard.group_proxy_key");
    for g in model.groups.values() {
        warnings.extend(proxy_key_warnings(lang, &g.proxy_keys, |n| {
            format!("{group} [{}] #{n}", g.name)
        }));
    }
    warnings
}

/// The warnings of a comma list of keys; `name(n)` names the n-th entry (1-based, counting
/// empty entries, as v1 numbers them).
fn proxy_key_warnings(lang: Lang, list: &str, name: impl Fn(usize) -> String) -> Vec<Value> {
    list.split(',')
        .enumerate()
        .map(|(i, key)| (i + 1, key.trim()))
        .filter(|(_, key)| !key.is_empty())
        .flat_map(|(n, key)| check_password(lang, key, &name(n)))
        .collect()
}

/// v1's `checkPasswordSecurity`: length (bytes) under 16 is high, under 32 medium; the first
/// weak pattern contained (case-insensitive) is high; 16 bytes or more with fewer than three
/// of upper, lower, digit and other characters is medium.
fn check_password(lang: Lang, password: &str, kind: &str) -> Vec<Value> {
    let mut warnings = Vec::new();
    let length = password.len();
    let args = |extra: Option<(&'static str, String)>| {
        let mut args = vec![
            ("keyType", kind.to_string()),
            ("length", length.to_string()),
        ];
        args.extend(extra);
        args
    };
    if length < 16 {
        warnings.push(warning(
            kind,
            fill(t(lang, "security.password_too_short"), &args(None)),
            "high",
            t(lang, "security.password_recommendation_16"),
        ));
    } else if length < 32 {
        warnings.push(warning(
            kind,
            fill(t(lang, "security.password_short"), &args(None)),
            "medium",
            t(lang, "security.password_recommendation_32"),
        ));
    }
    let lower = password.to_lowercase();
    if let Some(pattern) = WEAK_PATTERNS.iter().find(|p| lower.contains(*p)) {
        warnings.push(warning(
            kind,
            fill(
                t(lang, "security.password_weak_pattern"),
                &args(Some(("pattern", pattern.to_string()))),
            ),
            "high",
            t(lang, "security.password_avoid_common"),
        ));
    }
    if length >= 16 && character_classes(password) < 3 {
        warnings.push(warning(
            kind,
            fill(t(lang, "security.password_low_complexity"), &args(None)),
            "medium",
            t(lang, "security.password_complexity"),
        ));
    }
    warnings
}

/// How many of upper-case ASCII, lower-case ASCII, digits and anything else occur.
fn character_classes(password: &str) -> usize {
    let has = |f: fn(&char) -> bool| password.chars().any(|c| f(&c));
    [
        has(char::is_ascii_uppercase),
        has(char::is_ascii_lowercase),
        has(char::is_ascii_digit),
        has(|c| !c.is_ascii_alphanumeric()),
    ]
    .into_iter()
    .filter(|present| *present)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(warnings: &[Value]) -> Vec<(String, String)> {
        warnings
            .iter()
            .map(|w| {
                (
                    w["severity"].as_str().unwrap_or("").to_string(),
                    w["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn v1_password_rules() {
        let strong = "Zq8vN3kLp0Xw7Rt5-Hj4mW9qT2sLx8Vn6";
        assert!(check_password(Lang::EnUs, strong, "AUTH_KEY").is_empty());

        let short = kinds(&check_password(Lang::EnUs, "Ab1!", "AUTH_KEY"));
        assert_eq!(
            short,
            [(
                "high".to_string(),
                "AUTH_KEY is too short (4 characters), recommend at least 16 characters"
                    .to_string()
            )]
        );

        // 20 bytes, two patterns ("admin" first in the text, "123456" first in v1's list), only
        // lower case and digits.
        let weak = kinds(&check_password(Lang::EnUs, "xadmin123456xxxxxxxx", "K"));
        assert_eq!(weak.len(), 3, "{weak:?}");
        assert_eq!(weak[0].0, "medium");
        assert_eq!(
            weak[1],
            (
                "high".to_string(),
                "K contains common weak password patterns: 123456".to_string()
            ),
            "v1 reports the first pattern of its list that occurs"
        );
        assert_eq!(weak[2].0, "medium");

        let zh = check_password(Lang::ZhCn, "Ab1!", "AUTH_KEY");
        assert_eq!(
            zh[0]["message"],
            "AUTH_KEY长度不足（4字符），建议至少16字符"
        );
    }

    #[test]
    fn proxy_keys_are_numbered_like_v1() {
        let warnings = proxy_key_warnings(
            Lang::EnUs,
            "Zq8vN3kLp0Xw7Rt5-Hj4mW9qT2sLx8Vn6,, short",
            |n| format!("Global Proxy Key #{n}"),
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0]["type"], "Global Proxy Key #3");
    }
}
