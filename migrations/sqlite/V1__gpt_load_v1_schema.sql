-- The GPT-Load v1 schema (spec §1.6b), as GORM creates it on SQLite.
--
-- Every statement is IF NOT EXISTS: a database that GPT-Load v1 created opens as is, and this
-- migration is only recorded. Names (tables, columns, indexes, constraints) and declared types
-- are GORM's, so GPT-Load v1 can open a database created here too. Times are TEXT in the
-- `2006-01-02 15:04:05.999999999-07:00` layout, booleans 0/1, JSON columns text.
-- Never edit this file once released: refinery checks its checksum. Add V2__… instead.

CREATE TABLE IF NOT EXISTS system_settings (
    id            integer PRIMARY KEY AUTOINCREMENT,
    setting_key   varchar(255) NOT NULL,
    setting_value text NOT NULL,
    description   varchar(512),
    created_at    datetime,
    updated_at    datetime,
    CONSTRAINT uni_system_settings_setting_key UNIQUE (setting_key)
);

CREATE TABLE IF NOT EXISTS "groups" (
    id                    integer PRIMARY KEY AUTOINCREMENT,
    name                  varchar(255) NOT NULL,
    display_name          varchar(255),
    proxy_keys            text,
    description           varchar(512),
    group_type            varchar(50) DEFAULT 'standard',
    upstreams             json NOT NULL,
    validation_endpoint   varchar(255),
    channel_type          varchar(50) NOT NULL,
    sort                  integer DEFAULT 0,
    test_model            varchar(255) NOT NULL,
    param_overrides       json,
    config                json,
    header_rules          json,
    model_redirect_rules  json,
    model_redirect_strict numeric DEFAULT false,
    last_validated_at     datetime,
    created_at            datetime,
    updated_at            datetime,
    CONSTRAINT uni_groups_name UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS group_sub_groups (
    id           integer PRIMARY KEY AUTOINCREMENT,
    group_id     integer NOT NULL,
    sub_group_id integer NOT NULL,
    weight       integer DEFAULT 0,
    created_at   datetime,
    updated_at   datetime
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_group_sub ON group_sub_groups (group_id, sub_group_id);

CREATE TABLE IF NOT EXISTS api_keys (
    id            integer PRIMARY KEY AUTOINCREMENT,
    key_value     text NOT NULL,
    key_hash      varchar(128),
    group_id      integer NOT NULL,
    status        varchar(50) NOT NULL DEFAULT 'active',
    notes         varchar(255) DEFAULT '',
    request_count integer NOT NULL DEFAULT 0,
    failure_count integer NOT NULL DEFAULT 0,
    last_used_at  datetime,
    created_at    datetime,
    updated_at    datetime
);
CREATE INDEX IF NOT EXISTS idx_api_keys_key_hash ON api_keys (key_hash);
CREATE INDEX IF NOT EXISTS idx_api_keys_group_id ON api_keys (group_id);
CREATE INDEX IF NOT EXISTS idx_api_keys_status ON api_keys (status);
CREATE INDEX IF NOT EXISTS idx_api_keys_group_last_used_id ON api_keys (group_id, last_used_at, id);

CREATE TABLE IF NOT EXISTS request_logs (
    id                varchar(36),
    timestamp         datetime NOT NULL,
    group_id          integer NOT NULL,
    group_name        varchar(255),
    parent_group_id   integer,
    parent_group_name varchar(255),
    key_value         text,
    key_hash          varchar(128),
    model             varchar(255),
    is_success        numeric NOT NULL,
    source_ip         varchar(64),
    status_code       integer NOT NULL,
    request_path      varchar(500),
    duration_ms       integer NOT NULL,
    error_message     text,
    user_agent        varchar(512),
    request_type      varchar(20) NOT NULL DEFAULT 'final',
    upstream_addr     varchar(500),
    is_stream         numeric NOT NULL,
    request_body      text,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_request_logs_timestamp ON request_logs (timestamp);
CREATE INDEX IF NOT EXISTS idx_request_logs_group_id ON request_logs (group_id);
CREATE INDEX IF NOT EXISTS idx_request_logs_group_name ON request_logs (group_name);
CREATE INDEX IF NOT EXISTS idx_request_logs_parent_group_id ON request_logs (parent_group_id);
CREATE INDEX IF NOT EXISTS idx_request_logs_parent_group_name ON request_logs (parent_group_name);
CREATE INDEX IF NOT EXISTS idx_request_logs_key_hash ON request_logs (key_hash);
CREATE INDEX IF NOT EXISTS idx_request_logs_model ON request_logs (model);
CREATE INDEX IF NOT EXISTS idx_request_logs_request_type ON request_logs (request_type);

CREATE TABLE IF NOT EXISTS group_hourly_stats (
    id            integer PRIMARY KEY AUTOINCREMENT,
    time          datetime NOT NULL,
    group_id      integer NOT NULL,
    success_count integer NOT NULL DEFAULT 0,
    failure_count integer NOT NULL DEFAULT 0,
    created_at    datetime,
    updated_at    datetime
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_group_time ON group_hourly_stats (time, group_id);
