//! `system_settings`: the hot-reloadable settings, one row per setting key.
//!
//! Written without `ON CONFLICT (setting_key)` so that the statements do not depend on which
//! unique index or constraint an old v1 database happens to carry on that column.

use chrono::Utc;
use rusqlite::{Connection, params};

use super::{Context, SqliteStore, begin_write, columns, datetime};
use crate::error::StoreResult;
use crate::model::SettingRow;

impl SqliteStore {
    pub(crate) async fn load_settings(&self) -> StoreResult<Vec<SettingRow>> {
        self.read("load settings", load_settings).await
    }

    pub(crate) async fn seed_settings(&self, rows: Vec<SettingRow>) -> StoreResult<()> {
        self.write("seed settings", move |conn| seed_settings(conn, &rows))
            .await
    }

    pub(crate) async fn upsert_settings(&self, rows: Vec<SettingRow>) -> StoreResult<()> {
        self.write("upsert settings", move |conn| upsert_settings(conn, &rows))
            .await
    }
}

fn load_settings(conn: &Connection) -> StoreResult<Vec<SettingRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT setting_key, setting_value, description FROM system_settings ORDER BY id",
        )
        .context("load settings")?;
    let mut rows = stmt.query([]).context("load settings")?;
    let mut settings = Vec::new();
    while let Some(row) = rows.next().context("load settings")? {
        settings.push(SettingRow {
            key: columns::text(row, 0),
            value: columns::text(row, 1),
            description: columns::text(row, 2),
        });
    }
    Ok(settings)
}

/// Inserts the rows whose key is not stored yet; existing values are left alone.
fn seed_settings(conn: &mut Connection, rows: &[SettingRow]) -> StoreResult<()> {
    let now = datetime::format(Utc::now());
    let txn = begin_write(conn)?;
    {
        let mut insert = txn
            .prepare_cached(
                "INSERT INTO system_settings \
                 (setting_key, setting_value, description, created_at, updated_at) \
                 SELECT ?1, ?2, ?3, ?4, ?4 \
                 WHERE NOT EXISTS (SELECT 1 FROM system_settings WHERE setting_key = ?1)",
            )
            .context("seed settings")?;
        for row in rows {
            insert
                .execute(params![row.key, row.value, row.description, now])
                .with_context(|| format!("seed setting '{}'", row.key))?;
        }
    }
    txn.commit().context("commit seeded settings")
}

/// Stores each row's value (and its description, when one is given), inserting missing keys.
fn upsert_settings(conn: &mut Connection, rows: &[SettingRow]) -> StoreResult<()> {
    let now = datetime::format(Utc::now());
    let txn = begin_write(conn)?;
    {
        let mut update = txn
            .prepare_cached(
                "UPDATE system_settings SET setting_value = ?2, \
                 description = CASE WHEN ?3 = '' THEN description ELSE ?3 END, updated_at = ?4 \
                 WHERE setting_key = ?1",
            )
            .context("update settings")?;
        let mut insert = txn
            .prepare_cached(
                "INSERT INTO system_settings \
                 (setting_key, setting_value, description, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .context("insert settings")?;
        for row in rows {
            let params = params![row.key, row.value, row.description, now];
            let updated = update
                .execute(params)
                .with_context(|| format!("update setting '{}'", row.key))?;
            if updated == 0 {
                insert
                    .execute(params)
                    .with_context(|| format!("insert setting '{}'", row.key))?;
            }
        }
    }
    txn.commit().context("commit settings")
}
