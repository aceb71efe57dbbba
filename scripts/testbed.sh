#!/usr/bin/env bash
# Test hosts on this machine: each in its own network namespace with its own
# address on a bridge this script creates, its own OpenSSH server, and a
# private home and /tmp (a file written on one host is not on another). Root
# only. Every host has the same user (TESTBED_USER), as a cluster config has
# one `username`.
#
#   testbed.sh up ID K [KIND [SUDO]]
#                              make bridge fbID (10.213.ID.1/24) and hosts
#                              fbIDh1..fbIDhK at 10.213.ID.11 .. 10.213.ID.(10+K).
#                              KIND `host` (default): this machine's root
#                              filesystem, private home and /tmp (fast; the
#                              machine's python3-venv and rsync are there).
#                              KIND `bookworm` / `bullseye`: a bare Debian 12 / 11
#                              (debootstrap minbase: sshd and python3, nothing
#                              else), an overlay per host, chrooted, with its own
#                              PID namespace, /proc, /tmp and /dev/shm. What
#                              stands in for the internet there: pip.conf
#                              pointing at a wheel folder (/srv/wheels) and apt
#                              at a local repository (/srv/apt), both read-only.
#                              SUDO: host numbers ("1 3") given passwordless sudo.
#   testbed.sh roots           make (once) the bare roots, the wheel folder and
#                              the apt repository under $TOOLS (scripts/test.sh)
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
TOOLS=${FLAMBE_TEST_TOOLS:-/opt/flambe-test}
RAY_PIN=2.60.0
TENSORBOARD_PIN=2.21.0

die() { echo "testbed: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

# The bare roots, cached: debootstrap's minbase with sshd and python3, the
# test user inside, no host keys (each host makes its own).
make_root() { # SUITE
  local suite=$1 dir=$TOOLS/roots/$1
  [ -f "$dir/.flambe-ready" ] && return 0
  rm -rf "$dir.tmp"
  mkdir -p "$TOOLS/roots"
  debootstrap --variant=minbase --include=openssh-server,python3 "$suite" "$dir.tmp" \
    http://deb.debian.org/debian >"$TOOLS/roots/$suite.log" 2>&1 || die "debootstrap $suite failed: see $TOOLS/roots/$suite.log"
  chroot "$dir.tmp" useradd -m -s /bin/bash "$USER_NAME"
  chroot "$dir.tmp" usermod -p '*' "$USER_NAME"
  rm -f "$dir.tmp"/etc/ssh/ssh_host_*
  mkdir -p "$dir.tmp/srv/wheels" "$dir.tmp/srv/apt"
  printf '[global]\nno-index = true\nfind-links = /srv/wheels\ndisable-pip-version-check = true\n' > "$dir.tmp/etc/pip.conf"
  # The local repository holds bookworm's packages: other suites get none.
  if [ "$suite" = bookworm ]; then
    echo 'deb [trusted=yes] file:/srv/apt ./' > "$dir.tmp/etc/apt/sources.list"
  else
    : > "$dir.tmp/etc/apt/sources.list"
  fi
  rm -rf "$dir.tmp"/var/lib/apt/lists/*_Packages
  touch "$dir.tmp/.flambe-ready"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

# The local apt repository: what flambe may install on a bookworm host
# (python3-venv, rsync) and sudo for the test bed itself, with every
# dependency, fetched from Debian's registry with this machine's apt.
make_apt_repo() {
  local repo=$TOOLS/apt-bookworm
  [ -f "$repo/Packages" ] && return 0
  rm -rf "$repo.tmp" && mkdir -p "$repo.tmp"
  local pkgs
  pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances python3-venv rsync sudo | grep '^[a-z0-9]' | sort -u)
  # shellcheck disable=SC2086
  (cd "$repo.tmp" && apt-get download -q=2 $pkgs >/dev/null 2>&1) || die "apt-get download failed"
  (cd "$repo.tmp" && dpkg-scanpackages -m . > Packages 2>/dev/null)
  rm -rf "$repo" && mv "$repo.tmp" "$repo"
}

# The wheel folder bookworm hosts install Ray and TensorBoard from.
make_wheels() {
  local wheels=$TOOLS/host-wheels
  [ -f "$wheels/.complete-$RAY_PIN-$TENSORBOARD_PIN" ] && return 0
  mkdir -p "$wheels"
  "$TOOLS/venv/bin/pip" download -q --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    -d "$wheels" "ray[default]==$RAY_PIN" "tensorboard==$TENSORBOARD_PIN" >/dev/null || die "pip download failed"
  touch "$wheels/.complete-$RAY_PIN-$TENSORBOARD_PIN"
}

if [ "${1:-}" = roots ]; then
  make_root bookworm
  make_root bullseye
  make_apt_repo
  make_wheels
  exit 0
fi

cmd=${1:-}; id=${2:-}
[ -n "$cmd" ] && [ -n "$id" ] || die "usage: testbed.sh up|down|cut|restore|reboot|add|rekey|env ID [N] [ADDR]"
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

kind() { cat "$dir/kind" 2>/dev/null || echo host; }

start_sshd() { # N
  local n=$1 h=$dir/h$1
  if [ "$(kind)" = host ]; then
    ip netns exec "$(ns "$n")" unshare --mount --propagation private sh -c \
      "mount --bind $h/home /home/$USER_NAME && mount --bind $h/tmp /tmp && exec /usr/sbin/sshd -f $h/sshd_config"
    return
  fi
  # A bare host: its own PID namespace (sshd in the foreground as its
  # first process: when it goes, everything the host ran goes), its own
  # /proc, /tmp and /dev/shm, the stand-ins for the internet read-only.
  local m=$h/merged
  ip netns exec "$(ns "$n")" unshare --mount --pid --fork --kill-child --propagation private sh -c \
    "mount -t proc proc $m/proc && mount --rbind /sys $m/sys && mount --rbind /dev $m/dev && \
     mount -t tmpfs tmpfs $m/dev/shm && mount -t tmpfs -o mode=1777 tmpfs $m/tmp && \
     mount --bind $TOOLS/host-wheels $m/srv/wheels && mount -o remount,bind,ro $m/srv/wheels && \
     mount --bind $TOOLS/apt-bookworm $m/srv/apt && mount -o remount,bind,ro $m/srv/apt && \
     exec chroot $m /usr/sbin/sshd -D -e -f /etc/ssh/flambe_sshd_config" \
    </dev/null >/dev/null 2>"$h/sshd.log" &
  echo $! > "$h/sshd.pid"
  local addr
  addr=$(cat "$h/addr")
  for _ in $(seq 1 100); do
    ip netns exec "$(ns "$n")" bash -c "echo > /dev/tcp/$addr/22" 2>/dev/null && return 0
    sleep 0.05
  done
  die "sshd of host $n did not start: $(cat "$h/sshd.log")"
}

stop_sshd() { # N
  local pidfile=$dir/h$1/sshd.pid
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

add_host() { # N ADDR
  local n=$1 addr=$2 h=$dir/h$1 k
  k=$(kind)
  local home=$h/home keydir=$h config=$h/sshd_config pidfile=$h/sshd.pid
  if [ "$k" = host ]; then
    mkdir -p "$h/home/.ssh" "$h/tmp"
    chmod 1777 "$h/tmp"
    chown -R "$USER_NAME:$USER_NAME" "$h/home"
  else
    local lower=$TOOLS/roots/$k m=$h/merged
    [ -f "$lower/.flambe-ready" ] || die "no $k root in $lower: run 'testbed.sh roots' (scripts/test.sh does)"
    mkdir -p "$h/upper" "$h/work" "$m"
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$h/upper,workdir=$h/work" "$m"
    mkdir -p "$m/run/sshd"
    # What an installed system has (debootstrap writes no /etc/hosts):
    # TensorBoard, sudo and others resolve localhost and the host name.
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.1.1 %s\n' "$(hostname)" > "$m/etc/hosts"
    home=$m/home/$USER_NAME keydir=$m/etc/ssh config=$m/etc/ssh/flambe_sshd_config pidfile=/run/sshd.pid
    mkdir -p "$home/.ssh"
    chroot "$m" chown -R "$USER_NAME:$USER_NAME" "/home/$USER_NAME"
    if [[ " ${SUDO_HOSTS:-} " == *" $n "* ]]; then
      cp "$TOOLS"/apt-bookworm/sudo_*.deb "$m/var/tmp/sudo.deb"
      chroot "$m" dpkg -i /var/tmp/sudo.deb >/dev/null 2>&1 || die "cannot install sudo on host $n"
      rm -f "$m/var/tmp/sudo.deb"
      echo "$USER_NAME ALL=(ALL) NOPASSWD:ALL" > "$m/etc/sudoers.d/$USER_NAME"
      chmod 440 "$m/etc/sudoers.d/$USER_NAME"
    fi
  fi
  [ -f "$keydir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$keydir/ssh_host_ed25519_key"
  cp "$dir/user_key.pub" "$home/.ssh/authorized_keys"
  chown -R --reference="$home" "$home/.ssh"
  chmod 700 "$home" "$home/.ssh"
  chmod 600 "$home/.ssh/authorized_keys"
  local hostkey=$keydir/ssh_host_ed25519_key
  [ "$k" = host ] || hostkey=/etc/ssh/ssh_host_ed25519_key
  cat > "$config" <<EOF
ListenAddress $addr
Port 22
HostKey $hostkey
PidFile $pidfile
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
  echo "$home" > "$h/home_path"
  start_sshd "$n"
}

case $cmd in
  up)
    k=${3:?how many hosts}
    "$0" down "$id" >/dev/null 2>&1 || true
    mkdir -p /run/sshd "$dir"
    echo "${4:-host}" > "$dir/kind"
    SUDO_HOSTS=${5:-}
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
      if mountpoint -q "$h/merged" 2>/dev/null; then umount -l "$h/merged" 2>/dev/null || true; fi
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$dir"
    ;;
  reboot)
    # Every process of the host goes (sshd, Ray, a driver), its /tmp is
    # emptied, and sshd starts again: what a host has after a reboot.
    n=${3:?host number}
    [ "$(kind)" = host ] || die "reboot is for machine hosts"
    stop_sshd "$n"
    for _ in $(seq 1 50); do
      pids=$(ip netns pids "$(ns "$n")" 2>/dev/null)
      [ -z "$pids" ] && break
      echo "$pids" | xargs -r kill -9 2>/dev/null || true
      sleep 0.1
    done
    find "$dir/h$n/tmp" -mindepth 1 -delete 2>/dev/null || true
    start_sshd "$n"
    ;;
  cut) ip link set "$(veth "${3:?host number}")" down ;;
  restore) ip link set "$(veth "${3:?host number}")" up ;;
  rekey)
    n=${3:?host number}
    stop_sshd "$n"
    keydir=$dir/h$n
    [ "$(kind)" = host ] || keydir=$dir/h$n/merged/etc/ssh
    rm -f "$keydir/ssh_host_ed25519_key" "$keydir/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -f "$keydir/ssh_host_ed25519_key"
    start_sshd "$n"
    ;;
  env)
    echo "TESTBED_USER=$USER_NAME"
    echo "TESTBED_KEY=$dir/user_key"
    for h in "$dir"/h*; do
      echo "TESTBED_HOST_${h##*/h}=$(cat "$h/addr")"
      echo "TESTBED_HOME_${h##*/h}=$(cat "$h/home_path")"
    done
    ;;
  *) die "unknown command $cmd" ;;
esac
