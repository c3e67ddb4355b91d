-- The Unix socket a server listens on (spawner.transport = "unix"); NULL for a TCP server,
-- whose loopback port stays in `port`.
ALTER TABLE servers ADD COLUMN socket TEXT;
