-- Jobs (notebooks run headless, on a schedule or on demand) and their runs.
-- A job's definition (notebook, parameters, schedule, policies) is JSON checked by the hub,
-- so that new job options need no migration. `next_due` is the next scheduled occurrence;
-- `last_occurrence` the latest one the scheduler has dealt with (run, skipped or missed).
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    definition TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    next_due BIGINT,
    last_occurrence BIGINT,
    UNIQUE (username, name)
);

-- One row per run, written before the run starts. An occurrence (a scheduled time) runs at
-- most once per attempt (the UNIQUE constraint), and a job has at most one queued run (the
-- partial index), so restarts, retries and repeated clicks cannot double a run.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    occurrence BIGINT,
    reason TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    created BIGINT NOT NULL,
    started BIGINT,
    ended BIGINT,
    pid BIGINT,
    pid_start BIGINT,
    uid BIGINT,
    output_path TEXT,
    log_path TEXT,
    ticket_valid_until BIGINT,
    ticket_renew_until BIGINT,
    failed_cell BIGINT,
    error TEXT,
    message TEXT,
    UNIQUE (job_id, occurrence, attempt)
);
CREATE UNIQUE INDEX runs_one_queued_per_job ON runs (job_id) WHERE state = 'queued';
CREATE INDEX runs_by_job ON runs (job_id, id);
CREATE INDEX runs_active ON runs (state) WHERE state IN ('queued', 'running');
