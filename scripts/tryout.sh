#!/usr/bin/env bash
# Brings up a working hub on localhost for a try-out, on a fresh Debian 12 machine as root:
#   bash scripts/tryout.sh
# Installs the packages and a JupyterLab venv (scripts/setup.sh), builds the hub, creates a
# demo Linux user with a known password, a throwaway Kerberos realm HUB.DEMO with a KDC on
# 127.0.0.1 and a keytab for the demo user, writes /var/lib/hub-demo/hub.toml, runs
# `hub migrate` and `hub serve` in the foreground (Ctrl-C stops it). Idempotent: a second run
# reuses the user, the realm and the database.
#
#   HUB_DEMO_USER (demo)  HUB_DEMO_PASSWORD (demo-password)  HUB_DEMO_BIND (127.0.0.1:8000)
#   HUB_DEMO_KDC_PORT (18088)  HUB_DEMO_DIR (/var/lib/hub-demo)
set -euo pipefail
cd "$(dirname "$0")/.."

USER_NAME=${HUB_DEMO_USER:-demo}
PASSWORD=${HUB_DEMO_PASSWORD:-demo-password}
BIND=${HUB_DEMO_BIND:-127.0.0.1:8000}
KDC_PORT=${HUB_DEMO_KDC_PORT:-18088}
DIR=${HUB_DEMO_DIR:-/var/lib/hub-demo}
REALM=HUB.DEMO
VENV=${HUB_VENV:-/opt/hub/jupyter-venv}

bash scripts/setup.sh
cargo build --release --locked
HUB=$PWD/target/release/hub

install -d -m 0711 "$DIR"
install -d -m 0700 "$DIR/krb5"

# The demo user, with a known password.
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd -m -s /bin/bash "$USER_NAME"
fi
echo "$USER_NAME:$PASSWORD" | chpasswd

# A PAM service for the hub: pam_unix, without the 2 s failure delay of "login".
cat > /etc/pam.d/hub-demo <<'PAM'
auth required pam_unix.so
account required pam_unix.so
PAM

# The realm: config, database, KDC on loopback.
export KRB5_CONFIG=$DIR/krb5/krb5.conf KRB5_KDC_PROFILE=$DIR/krb5/kdc.conf
cat > "$KRB5_CONFIG" <<KRB
[libdefaults]
 default_realm = $REALM
 dns_lookup_realm = false
 dns_lookup_kdc = false
 rdns = false
[realms]
 $REALM = {
  kdc = 127.0.0.1:$KDC_PORT
 }
KRB
cat > "$KRB5_KDC_PROFILE" <<KDC
[kdcdefaults]
 kdc_listen = 127.0.0.1:$KDC_PORT
 kdc_tcp_listen = 127.0.0.1:$KDC_PORT
[realms]
 $REALM = {
  database_name = $DIR/krb5/principal
  key_stash_file = $DIR/krb5/stash
  acl_file = $DIR/krb5/kadm5.acl
 }
KDC
touch "$DIR/krb5/kadm5.acl"
if [ ! -f "$DIR/krb5/principal" ]; then
  kdb5_util -r "$REALM" create -s -P "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/dev/null
fi
if ! { [ -f "$DIR/krb5/kdc.pid" ] && kill -0 "$(cat "$DIR/krb5/kdc.pid")" 2>/dev/null; }; then
  krb5kdc -r "$REALM" -P "$DIR/krb5/kdc.pid"
fi
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
KEYTAB=$HOME_DIR/$USER_NAME.keytab
if ! kadmin.local -r "$REALM" -q "getprinc $USER_NAME@$REALM" 2>/dev/null | grep -q "^Principal:"; then
  kadmin.local -r "$REALM" -q "addprinc -pw $PASSWORD $USER_NAME@$REALM" >/dev/null
fi
if [ ! -f "$KEYTAB" ]; then
  kadmin.local -r "$REALM" -q "ktadd -k $KEYTAB -norandkey $USER_NAME@$REALM" >/dev/null
fi
chown "$USER_NAME:" "$KEYTAB"
chmod 600 "$KEYTAB"

cat > "$DIR/hub.toml" <<TOML
# Written by scripts/tryout.sh. See config/hub.toml for every key.
[hub]
bind = "$BIND"
public_url = "http://${BIND/127.0.0.1/localhost}"
public_urls = ["http://${BIND/127.0.0.1/localhost}", "http://$BIND"]
data_dir = "$DIR"

[auth]
method = "pam"
pam_service = "hub-demo"
admin_users = ["$USER_NAME"]

[spawner]
cmd = ["$VENV/bin/jupyter-lab"]
start_timeout = "60s"

[kerberos]
enabled = true
realm = "$REALM"
principal = "{username}@{realm}"
keytab = "/home/{username}/{username}.keytab"
ccache = "$DIR/ccache/krb5cc_{uid}"
krb5_config = "$KRB5_CONFIG"
TOML

"$HUB" migrate --config "$DIR/hub.toml"
cat <<MSG

  hub is starting at  http://${BIND/127.0.0.1/localhost}/
  user: $USER_NAME    password: $PASSWORD
  (Kerberos realm $REALM, KDC on 127.0.0.1:$KDC_PORT; the demo user's ticket is in $DIR/ccache)
  Ctrl-C stops the hub; the demo user's server keeps running and the next run re-adopts it.

MSG
exec "$HUB" serve --config "$DIR/hub.toml"
