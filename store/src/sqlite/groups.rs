//! `groups` and `group_sub_groups`: what the proxy routes to.
//!
//! The JSON columns are stored as given; an empty one is written as NULL (GORM's JSONMap reads
//! NULL as an empty map but fails on an empty string, and v1 may open this file again) and read
//! back as `""`.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, Row, Statement};

use super::{Context, SqliteStore, begin_write, columns, datetime, is_unique_violation};
use crate::error::{StoreError, StoreResult};
use crate::model::{GroupRow, SubGroupRow};

const GROUP_COLUMNS: &str = "id, name, display_name, description, group_type, upstreams, \
     validation_endpoint, channel_type, sort, test_model, param_overrides, config, header_rules, \
     model_redirect_rules, model_redirect_strict, proxy_keys, last_validated_at, created_at, \
     updated_at";

impl SqliteStore {
    pub(crate) async fn list_groups(&self) -> StoreResult<Vec<GroupRow>> {
        self.read("list groups", list_groups).await
    }

    pub(crate) async fn get_group(&self, id: i64) -> StoreResult<Option<GroupRow>> {
        self.read("get group", move |conn| get_group(conn, id))
            .await
    }

    pub(crate) async fn insert_group(&self, group: GroupRow) -> StoreResult<GroupRow> {
        self.write("insert group", move |conn| insert_group(conn, &group))
            .await
    }

    pub(crate) async fn update_group(&self, group: GroupRow) -> StoreResult<GroupRow> {
        self.write("update group", move |conn| update_group(conn, &group))
            .await
    }

    pub(crate) async fn delete_group(&self, id: i64) -> StoreResult<bool> {
        self.write("delete group", move |conn| delete_group(conn, id))
            .await
    }

    pub(crate) async fn reorder_groups(&self, items: Vec<(i64, i64)>) -> StoreResult<bool> {
        self.write("reorder groups", move |conn| reorder_groups(conn, &items))
            .await
    }

    pub(crate) async fn set_group_last_validated(
        &self,
        id: i64,
        at: chrono::DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.write("set group last_validated_at", move |conn| {
            conn.execute(
                "UPDATE \"groups\" SET last_validated_at = ?2 WHERE id = ?1",
                rusqlite::params![id, datetime::format(at)],
            )
            .map(|n| n > 0)
            .with_context(|| format!("set last_validated_at of group {id}"))
        })
        .await
    }

    pub(crate) async fn list_sub_groups(&self) -> StoreResult<Vec<SubGroupRow>> {
        self.read("list sub-groups", list_sub_groups).await
    }

    pub(crate) async fn add_sub_groups(&self, links: Vec<SubGroupRow>) -> StoreResult<()> {
        self.write("add sub-groups", move |conn| add_sub_groups(conn, &links))
            .await
    }

    pub(crate) async fn set_sub_group_weight(&self, link: SubGroupRow) -> StoreResult<bool> {
        self.write("set sub-group weight", move |conn| {
            let now = datetime::format(Utc::now());
            conn.execute(
                "UPDATE group_sub_groups SET weight = ?3, updated_at = ?4 \
                 WHERE group_id = ?1 AND sub_group_id = ?2",
                rusqlite::params![link.group_id, link.sub_group_id, link.weight, now],
            )
            .map(|n| n > 0)
            .context("set sub-group weight")
        })
        .await
    }

    pub(crate) async fn delete_sub_group(
        &self,
        group_id: i64,
        sub_group_id: i64,
    ) -> StoreResult<bool> {
        self.write("delete sub-group", move |conn| {
            conn.execute(
                "DELETE FROM group_sub_groups WHERE group_id = ?1 AND sub_group_id = ?2",
                [group_id, sub_group_id],
            )
            .map(|n| n > 0)
            .context("delete sub-group")
        })
        .await
    }
}

/// Inserts memberships in one transaction; an existing pair is a `Duplicate`.
fn add_sub_groups(conn: &mut Connection, links: &[SubGroupRow]) -> StoreResult<()> {
    let txn = begin_write(conn)?;
    {
        let now = datetime::format(Utc::now());
        let mut stmt = txn
            .prepare_cached(
                "INSERT INTO group_sub_groups (group_id, sub_group_id, weight, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .context("prepare sub-group insert")?;
        for link in links {
            stmt.execute(rusqlite::params![
                link.group_id,
                link.sub_group_id,
                link.weight,
                now
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Duplicate(format!(
                        "group {} is already a sub-group of group {}",
                        link.sub_group_id, link.group_id
                    ))
                } else {
                    StoreError::Db(format!("insert sub-group: {e}"))
                }
            })?;
        }
    }
    txn.commit().context("commit sub-groups")
}

fn group_from_row(row: &Row<'_>) -> GroupRow {
    GroupRow {
        id: columns::int(row, 0),
        name: columns::text(row, 1),
        display_name: columns::text(row, 2),
        description: columns::text(row, 3),
        // v1 treats anything but "aggregate" as standard; say so instead of passing on "".
        group_type: columns::text_or(row, 4, "standard"),
        upstreams: columns::text(row, 5),
        validation_endpoint: columns::text(row, 6),
        channel_type: columns::text(row, 7),
        sort: columns::int(row, 8),
        test_model: columns::text(row, 9),
        param_overrides: columns::text(row, 10),
        config: columns::text(row, 11),
        header_rules: columns::text(row, 12),
        model_redirect_rules: columns::text(row, 13),
        model_redirect_strict: columns::flag(row, 14),
        proxy_keys: columns::text(row, 15),
        last_validated_at: columns::time_opt(row, 16),
        created_at: columns::time(row, 17),
        updated_at: columns::time(row, 18),
    }
}

fn list_groups(conn: &Connection) -> StoreResult<Vec<GroupRow>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM \"groups\" ORDER BY sort ASC, id DESC");
    let mut stmt = conn.prepare_cached(&sql).context("list groups")?;
    let mut rows = stmt.query([]).context("list groups")?;
    let mut groups = Vec::new();
    while let Some(row) = rows.next().context("list groups")? {
        groups.push(group_from_row(row));
    }
    Ok(groups)
}

fn get_group(conn: &Connection, id: i64) -> StoreResult<Option<GroupRow>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM \"groups\" WHERE id = ?1");
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| Ok(group_from_row(row)))
                .optional()
        })
        .with_context(|| format!("get group {id}"))
}

/// Binds every column but `id` and `created_at` by name (`:name`, `:upstreams`, …, `:now`).
fn bind_group(stmt: &mut Statement<'_>, g: &GroupRow, now: &str) -> rusqlite::Result<()> {
    let group_type = if g.group_type.is_empty() {
        "standard"
    } else {
        g.group_type.as_str()
    };
    // `upstreams` is NOT NULL: an aggregate group stores an empty array.
    let upstreams = if g.upstreams.trim().is_empty() {
        "[]"
    } else {
        g.upstreams.as_str()
    };
    stmt.raw_bind_parameter(":name", &g.name)?;
    stmt.raw_bind_parameter(":display_name", &g.display_name)?;
    stmt.raw_bind_parameter(":description", &g.description)?;
    stmt.raw_bind_parameter(":group_type", group_type)?;
    stmt.raw_bind_parameter(":upstreams", upstreams)?;
    stmt.raw_bind_parameter(":validation_endpoint", &g.validation_endpoint)?;
    stmt.raw_bind_parameter(":channel_type", &g.channel_type)?;
    stmt.raw_bind_parameter(":sort", g.sort)?;
    stmt.raw_bind_parameter(":test_model", &g.test_model)?;
    stmt.raw_bind_parameter(":param_overrides", json_or_null(&g.param_overrides))?;
    stmt.raw_bind_parameter(":config", json_or_null(&g.config))?;
    stmt.raw_bind_parameter(":header_rules", json_or_null(&g.header_rules))?;
    stmt.raw_bind_parameter(
        ":model_redirect_rules",
        json_or_null(&g.model_redirect_rules),
    )?;
    stmt.raw_bind_parameter(":model_redirect_strict", g.model_redirect_strict)?;
    stmt.raw_bind_parameter(":proxy_keys", &g.proxy_keys)?;
    stmt.raw_bind_parameter(
        ":last_validated_at",
        g.last_validated_at.map(datetime::format),
    )?;
    stmt.raw_bind_parameter(":now", now)
}

fn json_or_null(json: &str) -> Option<&str> {
    (!json.trim().is_empty()).then_some(json)
}

fn duplicate_name_or(e: rusqlite::Error, g: &GroupRow, what: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Duplicate(format!("group name '{}' already exists", g.name))
    } else {
        StoreError::Db(format!("sqlite: {what} '{}': {e}", g.name))
    }
}

fn insert_group(conn: &mut Connection, g: &GroupRow) -> StoreResult<GroupRow> {
    let now = datetime::format(Utc::now());
    let txn = begin_write(conn)?;
    let id = {
        let mut stmt = txn
            .prepare_cached(
                "INSERT INTO \"groups\" (name, display_name, description, group_type, upstreams, \
                 validation_endpoint, channel_type, sort, test_model, param_overrides, config, \
                 header_rules, model_redirect_rules, model_redirect_strict, proxy_keys, \
                 last_validated_at, created_at, updated_at) \
                 VALUES (:name, :display_name, :description, :group_type, :upstreams, \
                 :validation_endpoint, :channel_type, :sort, :test_model, :param_overrides, \
                 :config, :header_rules, :model_redirect_rules, :model_redirect_strict, \
                 :proxy_keys, :last_validated_at, :now, :now)",
            )
            .context("prepare group insert")?;
        bind_group(&mut stmt, g, &now)
            .and_then(|()| stmt.raw_execute())
            .map_err(|e| duplicate_name_or(e, g, "insert group"))?;
        txn.last_insert_rowid()
    };
    let stored = get_group(&txn, id)?;
    txn.commit().context("commit group insert")?;
    stored.ok_or_else(|| StoreError::Db(format!("sqlite: group {id} vanished right after insert")))
}

fn update_group(conn: &mut Connection, g: &GroupRow) -> StoreResult<GroupRow> {
    let now = datetime::format(Utc::now());
    let txn = begin_write(conn)?;
    let changed = {
        let mut stmt = txn
            .prepare_cached(
                "UPDATE \"groups\" SET name = :name, display_name = :display_name, \
                 description = :description, group_type = :group_type, upstreams = :upstreams, \
                 validation_endpoint = :validation_endpoint, channel_type = :channel_type, \
                 sort = :sort, test_model = :test_model, param_overrides = :param_overrides, \
                 config = :config, header_rules = :header_rules, \
                 model_redirect_rules = :model_redirect_rules, \
                 model_redirect_strict = :model_redirect_strict, proxy_keys = :proxy_keys, \
                 last_validated_at = :last_validated_at, updated_at = :now \
                 WHERE id = :id",
            )
            .context("prepare group update")?;
        bind_group(&mut stmt, g, &now)
            .and_then(|()| stmt.raw_bind_parameter(":id", g.id))
            .and_then(|()| stmt.raw_execute())
            .map_err(|e| duplicate_name_or(e, g, "update group"))?
    };
    if changed == 0 {
        return Err(StoreError::NotFound(format!("group {} not found", g.id)));
    }
    let stored = get_group(&txn, g.id)?;
    txn.commit().context("commit group update")?;
    stored.ok_or_else(|| StoreError::NotFound(format!("group {} not found", g.id)))
}

/// Deletes the group with its keys and its aggregate memberships (as member or as aggregate).
fn delete_group(conn: &mut Connection, id: i64) -> StoreResult<bool> {
    let txn = begin_write(conn)?;
    let exists: bool = txn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM \"groups\" WHERE id = ?1)",
            [id],
            |row| row.get(0),
        )
        .with_context(|| format!("look up group {id}"))?;
    if !exists {
        return Ok(false);
    }
    for (what, sql) in [
        (
            "delete keys of group",
            "DELETE FROM api_keys WHERE group_id = ?1",
        ),
        (
            "delete sub-group links of group",
            "DELETE FROM group_sub_groups WHERE group_id = ?1 OR sub_group_id = ?1",
        ),
        ("delete group", "DELETE FROM \"groups\" WHERE id = ?1"),
    ] {
        txn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([id]))
            .with_context(|| format!("{what} {id}"))?;
    }
    txn.commit()
        .with_context(|| format!("commit delete of group {id}"))?;
    Ok(true)
}

/// Updates every pair's sort in one write transaction; an unknown id rolls all of it back.
/// The transaction holds SQLite's write lock from BEGIN, which is v1's row lock here.
fn reorder_groups(conn: &mut Connection, items: &[(i64, i64)]) -> StoreResult<bool> {
    let now = datetime::format(Utc::now());
    let txn = begin_write(conn)?;
    {
        let mut stmt = txn
            .prepare_cached("UPDATE \"groups\" SET sort = ?2, updated_at = ?3 WHERE id = ?1")
            .context("prepare group reorder")?;
        for (id, sort) in items {
            let changed = stmt
                .execute(rusqlite::params![id, sort, now])
                .with_context(|| format!("reorder group {id}"))?;
            if changed == 0 {
                // Dropping the transaction unapplied rolls back the rows already updated.
                return Ok(false);
            }
        }
    }
    txn.commit().context("commit group reorder")?;
    Ok(true)
}

fn list_sub_groups(conn: &Connection) -> StoreResult<Vec<SubGroupRow>> {
    let mut stmt = conn
        .prepare_cached("SELECT group_id, sub_group_id, weight FROM group_sub_groups ORDER BY id")
        .context("list sub-groups")?;
    let mut rows = stmt.query([]).context("list sub-groups")?;
    let mut links = Vec::new();
    while let Some(row) = rows.next().context("list sub-groups")? {
        links.push(SubGroupRow {
            group_id: columns::int(row, 0),
            sub_group_id: columns::int(row, 1),
            weight: columns::int(row, 2),
        });
    }
    Ok(links)
}
