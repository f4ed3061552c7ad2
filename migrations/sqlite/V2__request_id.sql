-- Our first addition to GPT-Load v1's schema: the request id every proxied response carries
-- (`X-Request-Id`), stored with each attempt so a client's report finds its log rows.
-- A nullable column: GPT-Load v1 ignores it if the database is ever opened by v1 again.
ALTER TABLE request_logs ADD COLUMN request_id varchar(64);
CREATE INDEX IF NOT EXISTS idx_request_logs_request_id ON request_logs (request_id);
