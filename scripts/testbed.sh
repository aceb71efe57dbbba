#!/usr/bin/env bash
# Test hosts on this machine: each in its own network namespace with its own
# address on a bridge this script creates, its own OpenSSH server, and a
# private home and /tmp (a file written on one host is not on another). Root
# only. Every host has the same user (TESTBED_USER), as a cluster config has
# one `username`.
#
#   testbed.sh up ID K         make bridge fbID (10.213.ID.1/24) and hosts
#                              fbIDh1..fbIDhK at 10.213.ID.11 .. 10.213.ID.(10+K)
#   testbed.sh down ID         stop and remove everything of testbed ID
#   testbed.sh cut ID N        take host N off the network (link down)
#   testbed.sh restore ID N    bring it back
#   testbed.sh add ID N ADDR   one more host N at ADDR (an address on the bridge)
#   testbed.sh rekey ID N      give host N a new host key (restarts its sshd)
#   testbed.sh env ID          print the facts tests need (KEY=value lines)
#
# Files live in /var/lib/flambe-testbed/ID/ (outside /tmp, which hosts hide).
set -euo pipefail
USER_NAME=${TESTBED_USER:-flambetest}
ROOT=/var/lib/flambe-testbed

die() { echo "testbed: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
cmd=${1:-}; id=${2:-}
[ -n "$cmd" ] && [ -n "$id" ] || die "usage: testbed.sh up|down|cut|restore|add|rekey|env ID [N] [ADDR]"
[[ "$id" =~ ^[0-9]+$ ]] && [ "$id" -ge 1 ] && [ "$id" -le 250 ] || die "ID must be 1..250"
dir=$ROOT/$id
bridge=fb$id
ns() { echo "fb${id}h$1"; }
veth() { echo "fb${id}v$1"; }

ensure_user() {
  if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$USER_NAME"
  fi
  usermod -p '*' "$USER_NAME" # unlocked, no password: keys only
}

start_sshd() { # N
  local n=$1 h=$dir/h$1
  ip netns exec "$(ns "$n")" unshare --mount --propagation private sh -c \
    "mount --bind $h/home /home/$USER_NAME && mount --bind $h/tmp /tmp && exec /usr/sbin/sshd -f $h/sshd_config"
}

stop_sshd() { # N
  local pidfile=$dir/h$1/sshd.pid
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

add_host() { # N ADDR
  local n=$1 addr=$2 h=$dir/h$1
  mkdir -p "$h/home/.ssh" "$h/tmp"
  chmod 1777 "$h/tmp"
  [ -f "$h/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$h/ssh_host_ed25519_key"
  cp "$dir/user_key.pub" "$h/home/.ssh/authorized_keys"
  chown -R "$USER_NAME:$USER_NAME" "$h/home"
  chmod 700 "$h/home" "$h/home/.ssh"
  chmod 600 "$h/home/.ssh/authorized_keys"
  cat > "$h/sshd_config" <<EOF
ListenAddress $addr
Port 22
HostKey $h/ssh_host_ed25519_key
PidFile $h/sshd.pid
AllowUsers $USER_NAME
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
AllowTcpForwarding yes
MaxSessions 50
MaxStartups 50:30:100
EOF
  ip netns add "$(ns "$n")"
  ip link add "$(veth "$n")" type veth peer name eth0 netns "$(ns "$n")"
  ip link set "$(veth "$n")" master "$bridge" up
  ip netns exec "$(ns "$n")" ip addr add "$addr/24" dev eth0
  ip netns exec "$(ns "$n")" ip link set eth0 up
  ip netns exec "$(ns "$n")" ip link set lo up
  echo "$addr" > "$h/addr"
  start_sshd "$n"
}

case $cmd in
  up)
    k=${3:?how many hosts}
    "$0" down "$id" >/dev/null 2>&1 || true
    mkdir -p /run/sshd "$dir"
    ensure_user
    ssh-keygen -q -t ed25519 -N '' -C "testbed-$id-user" -f "$dir/user_key" <<<y >/dev/null
    ip link add "$bridge" type bridge
    ip addr add "10.213.$id.1/24" dev "$bridge"
    ip link set "$bridge" up
    for n in $(seq 1 "$k"); do add_host "$n" "10.213.$id.$((10 + n))"; done
    ;;
  add)
    add_host "${3:?host number}" "${4:?address}"
    ;;
  down)
    for h in "$dir"/h*; do
      [ -d "$h" ] || continue
      n=${h##*/h}
      stop_sshd "$n"
      # Whatever the host still runs (Ray, servers a test started) goes too.
      ip netns pids "$(ns "$n")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$(ns "$n")" 2>/dev/null || true
      ip link del "$(veth "$n")" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$dir"
    ;;
  cut) ip link set "$(veth "${3:?host number}")" down ;;
  restore) ip link set "$(veth "${3:?host number}")" up ;;
  rekey)
    n=${3:?host number}
    stop_sshd "$n"
    rm -f "$dir/h$n/ssh_host_ed25519_key" "$dir/h$n/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -f "$dir/h$n/ssh_host_ed25519_key"
    start_sshd "$n"
    ;;
  env)
    echo "TESTBED_USER=$USER_NAME"
    echo "TESTBED_KEY=$dir/user_key"
    for h in "$dir"/h*; do echo "TESTBED_HOST_${h##*/h}=$(cat "$h/addr")"; done
    ;;
  *) die "unknown command $cmd" ;;
esac
