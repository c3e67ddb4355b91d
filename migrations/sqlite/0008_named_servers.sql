-- Named servers (JupyterHub's allow_named_servers): a user may have several servers, the
-- default one named ''. Each is its own row, kept while it is stopped (it is listed on the
-- home page) until it is deleted. `user_options` is the JSON the server was started with
-- (the profile). SQLite cannot change a primary key in place, so the table is rebuilt.
CREATE TABLE servers_new (
    username     TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    server_name  TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL,
    pid          INTEGER,
    port         INTEGER,
    started      INTEGER,
    stopped      INTEGER,
    message      TEXT,
    token        TEXT,
    pid_start    INTEGER,
    uid          INTEGER,
    gid          INTEGER,
    socket       TEXT,
    user_options TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (username, server_name)
);
INSERT INTO servers_new (username, server_name, state, pid, port, started, stopped, message, token, pid_start, uid, gid, socket)
    SELECT username, '', state, pid, port, started, stopped, message, token, pid_start, uid, gid, socket FROM servers;
DROP TABLE servers;
ALTER TABLE servers_new RENAME TO servers;
