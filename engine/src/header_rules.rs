//! Header rules (v1 §2.7): per group, headers to set or remove on every upstream request,
//! applied after the channel injected the key, so a rule can also move the key elsewhere (Azure's
//! `api-key`: set `api-key: ${API_KEY}`, remove `Authorization`).

/// One rule, parsed once per snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// Canonical name as configured (`X-Api-Key`); matched case-insensitively.
    pub name: Box<str>,
    /// `Some(template)` sets the header; `None` removes it.
    pub value: Option<Box<str>>,
}

/// What a rule's value may refer to.
pub struct RuleContext<'a> {
    pub client_ip: &'a str,
    pub group_name: &'a str,
    pub api_key: &'a str,
    pub now_ms: u64,
}

impl HeaderRule {
    /// Whether this rule decides the header `name` (it is then dropped wherever it came from).
    pub fn targets(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Whether any rule decides `name`.
pub fn is_ruled(rules: &[HeaderRule], name: &str) -> bool {
    rules.iter().any(|r| r.targets(name))
}

/// Substitutes `${CLIENT_IP}`, `${GROUP_NAME}`, `${API_KEY}`, `${TIMESTAMP_MS}`,
/// `${TIMESTAMP_S}` in `template`; anything else is kept as written.
pub fn expand(template: &str, ctx: &RuleContext<'_>) -> String {
    if !template.contains("${") {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len() + ctx.api_key.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        match &after[2..end] {
            "CLIENT_IP" => out.push_str(ctx.client_ip),
            "GROUP_NAME" => out.push_str(ctx.group_name),
            "API_KEY" => out.push_str(ctx.api_key),
            "TIMESTAMP_MS" => out.push_str(&ctx.now_ms.to_string()),
            "TIMESTAMP_S" => out.push_str(&(ctx.now_ms / 1000).to_string()),
            _ => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Writes the `set` rules to a request head with their variables expanded; `remove` rules act
/// by the caller leaving ruled headers out. Rules on the framing headers are skipped: the
/// request's own `Host` and length must stand.
pub fn write_set_rules(out: &mut Vec<u8>, rules: &[HeaderRule], ctx: &RuleContext<'_>) {
    const FRAMING: [&str; 3] = ["host", "content-length", "transfer-encoding"];
    for rule in rules {
        if FRAMING.iter().any(|f| rule.targets(f)) {
            continue;
        }
        if let Some(template) = &rule.value {
            crate::http::write_header(out, &rule.name, expand(template, ctx).as_bytes());
        }
    }
}

/// Parses the group's `header_rules` JSON (`[{key, value, action}]`); bad entries are skipped
/// (the admin API validates on save, a v1 database may hold anything).
pub fn parse(json: &str) -> Box<[HeaderRule]> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(json) else {
        return Box::new([]);
    };
    items
        .iter()
        .filter_map(|item| {
            let name = item.get("key")?.as_str()?.trim();
            if name.is_empty() {
                return None;
            }
            let value = match item.get("action")?.as_str()? {
                "set" => Some(
                    item.get("value")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .into(),
                ),
                "remove" => None,
                _ => return None,
            };
            Some(HeaderRule {
                name: name.into(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RuleContext<'static> {
        RuleContext {
            client_ip: "10.0.0.1",
            group_name: "g",
            api_key: "sk-k",
            now_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn variables_are_substituted() {
        let out = expand(
            "${API_KEY}|${CLIENT_IP}|${GROUP_NAME}|${TIMESTAMP_MS}|${TIMESTAMP_S}|${OTHER}|${",
            &ctx(),
        );
        assert_eq!(out, "sk-k|10.0.0.1|g|1700000000123|1700000000|${OTHER}|${");
        assert_eq!(expand("plain", &ctx()), "plain");
    }

    #[test]
    fn parses_set_and_remove() {
        let rules = parse(
            r#"[{"key":"Api-Key","value":"${API_KEY}","action":"set"},{"key":"Authorization","action":"remove"},{"key":"","action":"set"},{"key":"X","action":"bogus"}]"#,
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].value.as_deref(), Some("${API_KEY}"));
        assert!(rules[1].value.is_none() && rules[1].targets("authorization"));
        assert!(parse("not json").is_empty());
    }
}
