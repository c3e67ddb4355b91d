-- Hub groups (JupyterHub's groups: named sets of hub users, managed through the REST API;
-- not Unix groups).
CREATE TABLE groups (
    name    TEXT PRIMARY KEY NOT NULL,
    created INTEGER NOT NULL                 -- unix seconds
);
CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    username   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, username)
);
CREATE INDEX group_members_username ON group_members(username);

-- API tokens of users. Only the SHA-256 of a token is kept; `prefix` (its first 4
-- characters) narrows the lookup. Service tokens come from hub.toml, not from here.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,          -- hex SHA-256 of the whole token
    username      TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    scopes        TEXT NOT NULL,                 -- JSON array of scope strings
    note          TEXT NOT NULL DEFAULT '',
    created       INTEGER NOT NULL,              -- unix seconds
    expires_at    INTEGER,                       -- unix seconds; NULL: never
    last_activity INTEGER                        -- unix seconds; NULL: never used
);
CREATE INDEX api_tokens_prefix ON api_tokens(prefix);
CREATE INDEX api_tokens_username ON api_tokens(username);
