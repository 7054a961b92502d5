-- +goose Up
-- The JWT IDs of assertions already used (RFC 7523 §3 item 7), kept until
-- the assertion would have expired (plus the clock skew).
CREATE TABLE oauth_replay (
    issuer     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL, -- Unix microseconds
    PRIMARY KEY (issuer, jti)
) WITHOUT ROWID;
CREATE INDEX oauth_replay_expiry ON oauth_replay (expires_at);

-- +goose Down
DROP TABLE oauth_replay;
