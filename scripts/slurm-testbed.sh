#!/usr/bin/env bash
# A real Slurm on test hosts (Debian's slurm-wlm and munge): munged and
# slurmctld in the root namespace, one slurmd per test host in its network
# namespace (scripts/testbed.sh makes the hosts). Everything lives under
# /tmp/flambe-slurm-ID, on ports of its own, so it never meets a Slurm the
# machine may run.
#
#   slurm-testbed.sh up ID N...    Slurm on test bed ID, slurmd on hosts N...
#   slurm-testbed.sh env ID        SLURM_CONF=... for clients (sbatch, squeue)
#   slurm-testbed.sh down ID       stop it all, remove the folder
set -euo pipefail
cmd=${1:?usage: slurm-testbed.sh up|env|down ID [N...]}
id=${2:?test bed id}
shift 2
dir=/tmp/flambe-slurm-$id
conf=$dir/slurm.conf
ns() { echo "fb${id}h$1"; }

stop() {
  for pidfile in "$dir"/*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  # slurmd's job steps and anything else started from here.
  pkill -f -- "-f $conf" 2>/dev/null || true
  pkill -f -- "$dir/munge.socket" 2>/dev/null || true
}

wait_for() { # WHAT COMMAND...
  local what=$1
  shift
  for _ in $(seq 1 100); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "slurm-testbed: $what did not come up; logs in $dir" >&2
  for f in "$dir"/*.log; do tail -n 5 "$f" >&2; done
  return 1
}

case $cmd in
  up)
    [ $# -gt 0 ] || { echo "which hosts run slurmd?" >&2; exit 2; }
    stop
    rm -rf "$dir"
    mkdir -p "$dir/state" "$dir/spool"
    chmod 755 "$dir"
    # munge: its own key, socket and files; root may run it with --force.
    dd if=/dev/urandom bs=1 count=1024 of="$dir/munge.key" 2>/dev/null
    chmod 600 "$dir/munge.key"
    munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
      --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
    nodes=""
    {
      echo "ClusterName=flambe$id"
      # slurmctld runs only where the host name is its SlurmctldHost.
      echo "SlurmctldHost=$(hostname -s)(10.213.$id.1)"
      echo "MailProg=/bin/true"
      echo "SlurmctldPort=$((20000 + id))"
      echo "SlurmdPort=$((21000 + id))"
      echo "AuthType=auth/munge"
      echo "CredType=cred/munge"
      echo "AuthInfo=socket=$dir/munge.socket"
      echo "SlurmUser=root"
      echo "SlurmdUser=root"
      echo "StateSaveLocation=$dir/state"
      echo "SlurmdSpoolDir=$dir/spool/%n"
      echo "SlurmctldPidFile=$dir/slurmctld.pid"
      echo "SlurmdPidFile=$dir/slurmd-%n.pid"
      echo "SlurmctldLogFile=$dir/slurmctld.log"
      echo "SlurmdLogFile=$dir/slurmd-%n.log"
      echo "ProctrackType=proctrack/linuxproc"
      echo "TaskPlugin=task/none"
      echo "JobAcctGatherType=jobacct_gather/none"
      echo "AccountingStorageType=accounting_storage/none"
      echo "SchedulerType=sched/backfill"
      echo "SelectType=select/cons_tres"
      echo "SelectTypeParameters=CR_CPU"
      echo "MpiDefault=none"
      echo "ReturnToService=2"
      echo "SlurmdTimeout=30"
      echo "InactiveLimit=0"
      for n in "$@"; do
        echo "NodeName=n$n NodeAddr=10.213.$id.$((10 + n)) CPUs=$(nproc) State=UNKNOWN"
        nodes="$nodes${nodes:+,}n$n"
      done
      echo "PartitionName=test Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
    } > "$conf"
    slurmctld -f "$conf"
    wait_for slurmctld env SLURM_CONF="$conf" scontrol ping
    for n in "$@"; do
      mkdir -p "$dir/spool/n$n"
      # nsenter, not `ip netns exec`: that remounts /sys without the
      # cgroup mounts slurmd needs.
      nsenter --net=/run/netns/"$(ns "$n")" slurmd -f "$conf" -N "n$n"
    done
    for n in "$@"; do
      wait_for "slurmd on n$n" bash -c "SLURM_CONF=$conf sinfo -h -n n$n -o %t | grep -qE '^(idle|mix|alloc)'"
    done
    ;;
  env) echo "SLURM_CONF=$conf" ;;
  down)
    stop
    rm -rf "$dir"
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
