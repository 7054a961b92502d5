-- +goose Up
-- The JWT IDs of assertions already used (RFC 7523 §3 item 7), kept until
-- the assertion would have expired (plus the clock skew). Shared by a
-- node's replicas: a jti used at one is refused at every other.
CREATE TABLE oauth_replay (
    issuer     text   NOT NULL,
    jti        text   NOT NULL,
    expires_at bigint NOT NULL, -- Unix microseconds
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX oauth_replay_expiry ON oauth_replay (expires_at);

-- +goose Down
DROP TABLE oauth_replay;
