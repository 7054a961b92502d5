-- +goose Up
-- The localization hits of the participants' lookups (requesting side of
-- localization plateau 2–4), shared by a node's replicas: a lookup made
-- through one replica opens a Direct Pull through any other. key is
-- SHA-256 of "<participant URA>|<BSN>": the BSN is not stored in the clear.
CREATE TABLE localization_hit (
    key        bytea  NOT NULL,
    holder     text   NOT NULL,
    hit        text   NOT NULL, -- the signed hit, as the localization service gave it
    salt       bytea  NOT NULL, -- the salt of the lookup's patient binding
    expires_at bigint NOT NULL, -- Unix milliseconds
    PRIMARY KEY (key, holder)
);
CREATE INDEX localization_hit_expiry ON localization_hit (expires_at);

-- +goose Down
DROP TABLE localization_hit;
