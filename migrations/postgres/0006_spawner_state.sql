-- What a spawner needs to find a server it started after a hub restart, beyond a local pid:
-- a JSON object (JupyterHub's Spawner.get_state), e.g. the Slurm spawner's
-- {"job_id": 12, "node": "node1", "port": 40123, "pin": "<sha256 of the server's certificate>"}.
ALTER TABLE servers ADD COLUMN spawner_state TEXT;
