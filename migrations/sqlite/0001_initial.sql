-- Users the hub knows: created on first login.
CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    admin         INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL,          -- unix seconds
    last_activity INTEGER                    -- unix seconds
);

-- Login sessions. The session cookie's JWT carries the id; deleting the row revokes it.
CREATE TABLE sessions (
    id       TEXT PRIMARY KEY NOT NULL,      -- 32 hex chars, random
    username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created  INTEGER NOT NULL,               -- unix seconds
    expires  INTEGER NOT NULL                -- unix seconds
);
CREATE INDEX sessions_username ON sessions(username);

-- The last known state of each user's single-user server.
CREATE TABLE servers (
    username    TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    state       TEXT NOT NULL,               -- starting | running | stopped | failed
    pid         INTEGER,
    port        INTEGER,
    started     INTEGER,                     -- unix seconds
    stopped     INTEGER,                     -- unix seconds
    message     TEXT                         -- why it failed or how it exited
);
