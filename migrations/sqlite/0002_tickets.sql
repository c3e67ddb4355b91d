-- Each user's Kerberos ticket as the renewer last saw it (shown on /hub/home; read back on
-- restart so failure counts and the last error survive).
CREATE TABLE tickets (
    username             TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    principal            TEXT NOT NULL,
    ccache               TEXT NOT NULL,
    valid_from           INTEGER,            -- unix seconds
    valid_until          INTEGER,            -- unix seconds
    renew_until          INTEGER,            -- unix seconds
    last_success         INTEGER,            -- unix seconds
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_renewal         INTEGER             -- unix seconds
);
