-- The hub's schema on PostgreSQL: the same tables as migrations/sqlite/0001-0004, in one
-- step (there were no PostgreSQL databases before this). Times are unix seconds in BIGINT.
-- Names use the "C" collation so that they sort bytewise, as SQLite sorts them: the API's
-- user list pages in the same order on both backends, whatever the cluster's locale.

-- Users the hub knows: created on first login or through the REST API.
CREATE TABLE users (
    name          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    created       BIGINT NOT NULL,
    last_activity BIGINT
);

-- Login sessions. The session cookie's JWT carries the id; deleting the row revokes it.
CREATE TABLE sessions (
    id       TEXT PRIMARY KEY NOT NULL,      -- 32 hex chars, random
    username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created  BIGINT NOT NULL,
    expires  BIGINT NOT NULL
);
CREATE INDEX sessions_username ON sessions(username);

-- The last known state of each user's single-user server, with what a restarted hub needs
-- to find it again and proxy to it.
CREATE TABLE servers (
    username  TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    state     TEXT NOT NULL,                 -- starting | running | stopped | failed
    pid       BIGINT,
    port      BIGINT,
    started   BIGINT,
    stopped   BIGINT,
    message   TEXT,                          -- why it failed or how it exited
    token     TEXT,                          -- the server's token (grant the hub's role only)
    pid_start BIGINT,                        -- clock ticks after boot (/proc/PID/stat field 22)
    uid       BIGINT,
    gid       BIGINT
);

-- Each user's Kerberos ticket as the renewer last saw it.
CREATE TABLE tickets (
    username             TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    principal            TEXT NOT NULL,
    ccache               TEXT NOT NULL,
    valid_from           BIGINT,
    valid_until          BIGINT,
    renew_until          BIGINT,
    last_success         BIGINT,
    last_error           TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    next_renewal         BIGINT
);

-- Hub groups (JupyterHub's groups, managed through the REST API; not Unix groups).
CREATE TABLE groups (
    name    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    username   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, username)
);
CREATE INDEX group_members_username ON group_members(username);

-- API tokens of users: only the SHA-256 of a token is kept; `prefix` narrows the lookup.
CREATE TABLE api_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the whole token
    username      TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    scopes        TEXT NOT NULL,             -- JSON array of scope strings
    note          TEXT NOT NULL DEFAULT '',
    created       BIGINT NOT NULL,
    expires_at    BIGINT,                    -- NULL: never
    last_activity BIGINT                     -- NULL: never used
);
CREATE INDEX api_tokens_prefix ON api_tokens(prefix);
CREATE INDEX api_tokens_username ON api_tokens(username);
