-- Admin rights come from two places that must not mix (JupyterHub keeps them apart too):
-- `admin` is the flag an admin sets through the REST API (PATCH /users/{name}) and keeps until
-- it is cleared there; `admin_from_groups` is what [auth] admin_groups said at the user's last
-- login, recomputed at every login. A user is an admin if either is set, or if [auth]
-- admin_users lists them (checked against the configuration, never stored).
ALTER TABLE users ADD COLUMN admin_from_groups BOOLEAN NOT NULL DEFAULT FALSE;
