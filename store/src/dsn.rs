//! Reading `DATABASE_DSN`: which backend it names, and how to show it without its password.
//!
//! The choice is GPT-Load v1's, byte for byte, so that an existing `.env` keeps meaning the same
//! database: a `postgres://` or `postgresql://` URL is PostgreSQL, anything containing `@tcp(`
//! is a Go-driver MySQL DSN (`user:pass@tcp(host:3306)/db?...`), and everything else is a SQLite
//! file path. Not for connecting: each backend parses its own DSN.

use std::path::Path;

/// The backend a DSN names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dsn<'a> {
    /// A SQLite database file (or `:memory:`).
    Sqlite(&'a Path),
    MySql,
    Postgres,
}

impl<'a> Dsn<'a> {
    /// Classifies `dsn` the way GPT-Load v1 does.
    pub(crate) fn classify(dsn: &'a str) -> Self {
        if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            Dsn::Postgres
        } else if dsn.contains("@tcp(") {
            Dsn::MySql
        } else {
            Dsn::Sqlite(Path::new(dsn))
        }
    }
}

/// `dsn` with every password replaced by `***`, safe for logs and error messages.
///
/// Covers the user-info of URLs (`scheme://user:pass@host`), Go MySQL DSNs (`user:pass@tcp(…)`)
/// and `password=…` pairs (libpq key=value strings, URL query parameters). When unsure where the
/// user-info ends it masks too much rather than too little.
pub(crate) fn redact(dsn: &str) -> String {
    redact_password_pairs(&redact_user_info(dsn))
}

/// Masks the password in `[scheme://]user:password@rest`.
fn redact_user_info(dsn: &str) -> String {
    let (scheme, rest) = match dsn.find("://") {
        Some(i) => dsn.split_at(i + 3),
        None => ("", dsn),
    };
    // The last '@' ends the user-info: a password may itself contain '@' (MySQL DSNs are not
    // URL-encoded), a host never does.
    let Some(at) = rest.rfind('@') else {
        return dsn.to_owned();
    };
    let (user_info, host_part) = rest.split_at(at);
    match user_info.find(':') {
        Some(colon) => format!("{scheme}{}:***{host_part}", &user_info[..colon]),
        None => dsn.to_owned(),
    }
}

/// Masks the value of every `password=` pair, whether separated by spaces or by `&`.
fn redact_password_pairs(dsn: &str) -> String {
    const NEEDLE: &str = "password=";
    let lower = dsn.to_ascii_lowercase();
    let mut out = String::with_capacity(dsn.len());
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find(NEEDLE) {
        let value_start = search_from + found + NEEDLE.len();
        let value_len = dsn[value_start..]
            .find(|c: char| c.is_whitespace() || c == '&')
            .unwrap_or(dsn.len() - value_start);
        out.push_str(&dsn[copied..value_start]);
        out.push_str("***");
        copied = value_start + value_len;
        search_from = copied;
    }
    out.push_str(&dsn[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_as_gpt_load_does() {
        assert_eq!(Dsn::classify("postgres://u:p@h/db"), Dsn::Postgres);
        assert_eq!(Dsn::classify("postgresql://h/db"), Dsn::Postgres);
        assert_eq!(Dsn::classify("root:pw@tcp(127.0.0.1:3306)/gpt"), Dsn::MySql);
        assert_eq!(
            Dsn::classify("./data/gpt-load.db"),
            Dsn::Sqlite(Path::new("./data/gpt-load.db"))
        );
        // v1 only looks at the prefix: a libpq key=value string is a (strange) file name.
        assert!(matches!(Dsn::classify("host=h user=u"), Dsn::Sqlite(_)));
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact("postgres://admin:s3cr@t@db.local:5432/gpt?sslmode=disable"),
            "postgres://admin:***@db.local:5432/gpt?sslmode=disable"
        );
        assert_eq!(redact("postgres://db.local/gpt"), "postgres://db.local/gpt");
        assert_eq!(
            redact("postgresql://u@db.local/gpt"),
            "postgresql://u@db.local/gpt"
        );
    }

    #[test]
    fn redacts_mysql_passwords() {
        assert_eq!(
            redact("root:p@ss:word@tcp(127.0.0.1:3306)/gpt?charset=utf8mb4"),
            "root:***@tcp(127.0.0.1:3306)/gpt?charset=utf8mb4"
        );
    }

    #[test]
    fn redacts_password_pairs() {
        assert_eq!(
            redact("host=h password=hunter2 dbname=gpt"),
            "host=h password=*** dbname=gpt"
        );
        assert_eq!(
            redact("postgres://h/gpt?Password=x&sslmode=require"),
            "postgres://h/gpt?Password=***&sslmode=require"
        );
    }

    #[test]
    fn leaves_paths_alone() {
        assert_eq!(redact("./data/gpt-load.db"), "./data/gpt-load.db");
    }
}
