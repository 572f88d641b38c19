#!/bin/bash
# Build the jincai lab base image (Debian 12 bookworm) into an EMPTY directory.
#
#   build-image.sh ROOT MIRROR SECURITY_MIRROR PACKAGES_FILE
#
# Called by jincai/lab/image.py, which builds into a temporary directory and renames it into the
# cache only when this script succeeds (a killed build never leaves a half image). The cache key is
# a hash of this script and the package list, so editing either rebuilds the image.
set -euo pipefail

ROOT=$1
MIRROR=$2
SECURITY=$3
PACKAGES_FILE=$4
SUITE=bookworm

step() { echo "== image: $*"; }

# Packages from the list, without comments and blank lines.
mapfile -t PKGS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES_FILE" | grep -v '^$')

step "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,sudo \
    "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
    tail -n 20 "$ROOT.debootstrap.log" >&2; exit 1; }
rm -f "$ROOT.debootstrap.log"

step "apt sources, policy-rc.d (no service starts during the build), resolv.conf (build only)"
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

in_root() { chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
# Maintainer scripts want /proc; image.py also unmounts anything left under ROOT if we are killed.
mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT

step "apt-get install ${#PKGS[@]} packages"
in_root apt-get update -q >/dev/null
in_root apt-get install -y -q --no-install-recommends "${PKGS[@]}" >"$ROOT.apt.log" 2>&1 || {
    tail -n 30 "$ROOT.apt.log" >&2; exit 1; }
rm -f "$ROOT.apt.log"

step "locales, time zone"
printf 'en_US.UTF-8 UTF-8\nzh_CN.UTF-8 UTF-8\n' >"$ROOT/etc/locale.gen"
in_root locale-gen >/dev/null
echo 'LANG=en_US.UTF-8' >"$ROOT/etc/default/locale"
ln -sf /usr/share/zoneinfo/Asia/Shanghai "$ROOT/etc/localtime"
echo Asia/Shanghai >"$ROOT/etc/timezone"

step "automation account jincai (passwordless sudo; keys are added per host at boot)"
in_root useradd --create-home --shell /bin/bash --comment "jincai automation" jincai
echo 'jincai ALL=(ALL) NOPASSWD: ALL' >"$ROOT/etc/sudoers.d/jincai"
chmod 440 "$ROOT/etc/sudoers.d/jincai"
in_root visudo -cf /etc/sudoers.d/jincai >/dev/null
install -d -m 700 -o "$(chroot "$ROOT" id -u jincai)" -g "$(chroot "$ROOT" id -g jincai)" \
    "$ROOT/home/jincai/.ssh"

step "SSH: no host keys in the image, each host generates its own at first boot"
rm -f "$ROOT"/etc/ssh/ssh_host_*
cat >"$ROOT/usr/local/sbin/jincai-ssh-hostkeys" <<'EOF'
#!/bin/sh
# Generate whichever of this host's own SSH host keys is missing (jincai lab, first boot).
set -e
for type in ed25519 ecdsa; do
    key=/etc/ssh/ssh_host_${type}_key
    if [ ! -s "$key.pub" ]; then
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t "$type" -N "" -f "$key"
    fi
done
EOF
chmod 755 "$ROOT/usr/local/sbin/jincai-ssh-hostkeys"
cat >"$ROOT/etc/systemd/system/jincai-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this host's own SSH host keys (jincai lab, first boot)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ecdsa_key.pub

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/jincai-ssh-hostkeys
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
EOF
cat >"$ROOT/etc/ssh/sshd_config.d/jincai-lab.conf" <<'EOF'
# jincai lab: key authentication only, no DNS lookups (the lab has no resolver).
# Ed25519 and ECDSA host keys only: 19 RSA keys at first boot cost ~10 CPU-seconds.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
systemctl --root="$ROOT" --quiet enable jincai-ssh-hostkeys.service ssh.service

step "systemd: bounded in-memory journal, quick power-off (for \`jincai lab down\`)"
mkdir -p "$ROOT/etc/systemd/journald.conf.d" "$ROOT/etc/systemd/system.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$ROOT/etc/systemd/journald.conf.d/jincai-lab.conf"
printf '[Manager]\nDefaultTimeoutStopSec=15s\n' >"$ROOT/etc/systemd/system.conf.d/jincai-lab.conf"

step "disable services the roles manage (a router enables frr at boot)"
for unit in frr.service nginx.service postgresql.service strongswan.service chrony.service \
            rsyslog.service auditd.service cron.service \
            aidecheck.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
            apt-daily.timer apt-daily-upgrade.timer man-db.timer dpkg-db-backup.timer \
            systemd-timesyncd.service logrotate.timer; do
    if [ -e "$ROOT/lib/systemd/system/$unit" ] || [ -e "$ROOT/etc/systemd/system/$unit" ]; then
        systemctl --root="$ROOT" --quiet disable "$unit"
    fi
done
# Console gettys are useless in a container started in the background.
systemctl --root="$ROOT" --quiet mask console-getty.service getty@tty1.service
enabled=$(systemctl --root="$ROOT" list-unit-files --state=enabled --no-legend | awk '{print $1}' | tr '\n' ' ')
echo "   enabled units: $enabled"

umount "$ROOT/proc"
trap - EXIT
step "clean up: apt lists and caches, resolv.conf, policy-rc.d, machine-id"
in_root apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/tmp/* "$ROOT"/var/tmp/*
rm -f "$ROOT/etc/resolv.conf" "$ROOT/usr/sbin/policy-rc.d"
: >"$ROOT/etc/resolv.conf"
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
echo "jincai-lab" >"$ROOT/etc/hostname"
step "done ($(du -sm "$ROOT" | cut -f1) MB)"
