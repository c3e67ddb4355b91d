-- Named servers (JupyterHub's allow_named_servers): a user may have several servers, the
-- default one named ''. Each is its own row, kept while it is stopped until it is deleted.
-- `user_options` is the JSON the server was started with (the profile).
ALTER TABLE servers ADD COLUMN server_name TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN user_options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE servers DROP CONSTRAINT servers_pkey;
ALTER TABLE servers ADD PRIMARY KEY (username, server_name);
