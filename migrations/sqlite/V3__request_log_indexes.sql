-- Request logs keep only the indexes a query of ours reads: timestamp (every page, the
-- dashboard, retention), key_hash (the key filter and the key export), request_id and the
-- primary key. GPT-Load v1 also indexed group_id, group_name, parent_group_id,
-- parent_group_name, model and request_type; no query uses them (the name and model filters
-- are "contains" LIKEs, which no index serves, and request_type has two values), yet each
-- costs every logged request a B-tree insert: together a third of what a log row costs.
-- Should v1 open this database again, its AutoMigrate creates them anew.
DROP INDEX IF EXISTS idx_request_logs_group_id;
DROP INDEX IF EXISTS idx_request_logs_group_name;
DROP INDEX IF EXISTS idx_request_logs_parent_group_id;
DROP INDEX IF EXISTS idx_request_logs_parent_group_name;
DROP INDEX IF EXISTS idx_request_logs_model;
DROP INDEX IF EXISTS idx_request_logs_request_type;
