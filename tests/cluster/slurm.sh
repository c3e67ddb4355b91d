#!/usr/bin/env bash
# A real, throwaway Slurm cluster on this machine, for the Slurm spawner's tests.
#
#   bash tests/cluster/slurm.sh start DIR    # prints KEY=VALUE lines (also in DIR/cluster.env)
#   bash tests/cluster/slurm.sh stop DIR     # kills every daemon and job, removes the network
#   bash tests/cluster/slurm.sh kill-node DIR node1     # a node dies: its slurmd and jobs, SIGKILL
#   bash tests/cluster/slurm.sh restart-node DIR node1  # ... and comes back
#
# DIR must not be under /tmp: it is the cluster's shared filesystem (slurm.conf, the munge
# socket, a copy of the hub binary, the KDC's krb5.conf), visible on every node, while /tmp on
# each node is the node's own (a bind mount in the node's mount namespace), as on a real
# cluster: a file the login host has in /tmp is not on the nodes.
#
# Layout (see ../shared/REAL-PARTS-cluster.md for why each piece is so):
#   root namespace = the login host: 10.213.N.1 on a bridge; the hub, sbatch, the KDC
#   netns <p>-ctl   10.213.N.2    slurmctld (own UTS namespace: hostname <p>ctl)
#   netns <p>-n1    10.213.N.11   slurmd -N node1 (own UTS and mount namespace, own /tmp)
#   netns <p>-n2    10.213.N.12   slurmd -N node2
# N and <p> are random, so parallel clusters do not collide. The nodes have only the /24
# route: nothing they run leaves the machine. One munged (socket in DIR) serves all.
#
# Needs root, iproute2, util-linux (nsenter, unshare, setpriv) and Debian's slurmctld, slurmd,
# slurm-client and munge (scripts/setup.sh installs them).
set -euo pipefail

cmd=${1:-}; R=${2:-}; NODE=${3:-}
if [ -z "$cmd" ] || [ -z "$R" ]; then
  echo "usage: $0 start|stop|kill-node|restart-node DIR [NODE]" >&2; exit 2
fi
case "$R" in /tmp/*) echo "slurm.sh: DIR must not be under /tmp (the nodes have their own /tmp)" >&2; exit 2;; esac

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "slurm.sh: $what did not happen within ${limit}s" >&2; return 1; fi
    sleep 0.1
  done
}

stop() {
  [ -f "$R/cluster.env" ] || return 0
  # shellcheck disable=SC1091
  . "$R/cluster.env"
  for f in "$R"/pids/*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for ns in "$HUB_SLURM_PREFIX-n1" "$HUB_SLURM_PREFIX-n2" "$HUB_SLURM_PREFIX-ctl"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  done
  sleep 0.2
  for ns in "$HUB_SLURM_PREFIX-n1" "$HUB_SLURM_PREFIX-n2" "$HUB_SLURM_PREFIX-ctl"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$HUB_SLURM_BRIDGE" 2>/dev/null || true
  rm -f "$R/cluster.env"
}

# start_node NAME: slurmd for node NAME in its namespaces (own hostname, /etc/hosts and /tmp,
# bind mounts in its own mount namespace, inherited by its jobs); DIR stays visible.
start_node() {
  local h=$1 ns=$HUB_SLURM_PREFIX-n1
  [ "$h" = node2 ] && ns=$HUB_SLURM_PREFIX-n2
  setsid nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private sh -c "
    hostname $h
    mount --bind '$R/nodes/$h/hosts' /etc/hosts
    mount --rbind '$R/nodes/$h/tmp' /tmp
    exec slurmd -D -N $h -f '$SLURM_CONF'" </dev/null >>"$R/slurm/log/slurmd.$h.out" 2>&1 &
  echo $! > "$R/pids/slurmd-$h"
}

case "$cmd" in
  stop) stop; rm -rf "$R"; exit 0 ;;
  kill-node|restart-node)
    # shellcheck disable=SC1091
    . "$R/cluster.env"; export SLURM_CONF
    case "$NODE" in node1) ns=$HUB_SLURM_PREFIX-n1 ;; node2) ns=$HUB_SLURM_PREFIX-n2 ;; *) echo "slurm.sh: no node $NODE" >&2; exit 2 ;; esac
    if [ "$cmd" = kill-node ]; then
      kill -9 "$(cat "$R/pids/slurmd-$NODE")" 2>/dev/null || true
      for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null || true; done
    else
      start_node "$NODE"
      wait_for 60 "$NODE back in service" sh -c "sinfo -h -n $NODE -o %T | grep -qx idle"
    fi
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|kill-node|restart-node DIR [NODE]" >&2; exit 2 ;;
esac

mkdir -p "$R"; chmod 755 "$R"
R=$(cd "$R" && pwd)
# A subnet and names no other cluster on this machine has (parallel runs, a leftover).
for _ in $(seq 50); do
  suffix=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
  N=$(( 16#${suffix:0:2} % 200 + 20 ))
  ip -o addr show | grep -q " 10\.213\.$N\." || ip link show "hsbr$suffix" >/dev/null 2>&1 || break
done
P=hs$suffix                       # netns prefix; veth names stay under 15 characters
NET=10.213.$N
BR=hsbr$suffix
cat > "$R/cluster.env" <<EOF
HUB_SLURM_DIR=$R
HUB_SLURM_PREFIX=$P
HUB_SLURM_BRIDGE=$BR
HUB_SLURM_LOGIN_ADDR=$NET.1
HUB_SLURM_NODE1_ADDR=$NET.11
HUB_SLURM_NODE2_ADDR=$NET.12
SLURM_CONF=$R/slurm/slurm.conf
EOF
trap 'echo "slurm.sh: start failed; tearing down" >&2; stop' ERR

# The network: a bridge on the login host, a veth into each namespace.
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
for spec in ctl:2 n1:11 n2:12; do
  h=${spec%%:*}; o=${spec##*:}; ns=$P-$h
  ip netns add "$ns"
  ip link add "hv$suffix$h" type veth peer name eth0 netns "$ns"
  ip link set "hv$suffix$h" master "$BR" up
  ip -n "$ns" addr add "$NET.$o/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

mkdir -p "$R/pids"
# munge, with its key and socket in DIR.
M=$R/munge
install -d -m 755 "$M"
install -d -o munge -g munge -m 700 "$M/etc" "$M/lib" "$M/log"
install -d -o munge -g munge -m 755 "$M/run"
setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$M/etc/munge.key"
setsid setpriv --reuid=munge --regid=munge --init-groups munged -F --socket="$M/run/munge.socket" \
  --key-file="$M/etc/munge.key" --log-file="$M/log/munged.log" --pid-file="$M/run/munged.pid" \
  --seed-file="$M/lib/munged.seed" </dev/null >/dev/null 2>&1 &
echo $! > "$R/pids/munged"
wait_for 10 "munged's socket" test -S "$M/run/munge.socket"

S=$R/slurm
install -d -m 755 "$S" "$S/run" "$S/spool-node1" "$S/spool-node2"
install -d -o slurm -g slurm -m 755 "$S/ctld" "$S/log"
cat > "$S/slurm.conf" <<EOF
ClusterName=hubtest
SlurmctldHost=${P}ctl($NET.2)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$M/run/munge.socket
MailProg=/bin/true
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/spool-%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=10
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=300
GroupUpdateTime=2
SlurmdParameters=config_overrides
NodeName=node1 NodeAddr=$NET.11 CPUs=4 RealMemory=4000 State=UNKNOWN
NodeName=node2 NodeAddr=$NET.12 CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$S/slurm.conf

setsid nsenter --net="/run/netns/$P-ctl" unshare --uts \
  sh -c "hostname ${P}ctl; exec slurmctld -D -f '$SLURM_CONF'" </dev/null >"$S/log/slurmctld.out" 2>&1 &
echo $! > "$R/pids/slurmctld"
wait_for 20 "slurmctld answering" sh -c 'scontrol ping | grep -q UP'

for h in node1 node2; do
  install -d -m 755 "$R/nodes/$h"
  install -d -m 1777 "$R/nodes/$h/tmp"
  printf '127.0.0.1 localhost\n%s.1 login\n%s.2 %sctl\n%s.11 node1\n%s.12 node2\n' \
    "$NET" "$NET" "$P" "$NET" "$NET" > "$R/nodes/$h/hosts"
  HUB_SLURM_PREFIX=$P start_node "$h"
done
wait_for 30 "both nodes idle" sh -c '[ "$(sinfo -h -N -o %T | sort -u)" = idle ]'
trap - ERR
cat "$R/cluster.env"
