-- What a restarted hub needs to find a running server again and proxy to it.
ALTER TABLE servers ADD COLUMN token TEXT;        -- the server's token (the file is mode 0600)
ALTER TABLE servers ADD COLUMN pid_start INTEGER; -- process start time, clock ticks after boot (/proc/PID/stat field 22), to tell a reused pid
ALTER TABLE servers ADD COLUMN uid INTEGER;       -- the owner's UID and primary GID at spawn
ALTER TABLE servers ADD COLUMN gid INTEGER;
