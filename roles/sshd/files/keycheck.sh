#!/bin/bash
# Usage: keycheck.sh AUTOMATION_USER KEY_DIR [PERSON...]
# Prints "key USER" or "nokey USER" for each account, depending on whether sshd would find a
# parseable public key for it (the automation account may also use ~/.ssh/authorized_keys).
set -u
auto=$1 dir=$2
shift 2
home=$(getent passwd "$auto" | cut -d: -f6)
if ssh-keygen -l -f "$home/.ssh/authorized_keys" >/dev/null 2>&1 || ssh-keygen -l -f "$dir/$auto" >/dev/null 2>&1; then
    echo "key $auto"
else
    echo "nokey $auto"
fi
for u in "$@"; do
    if ssh-keygen -l -f "$dir/$u" >/dev/null 2>&1; then echo "key $u"; else echo "nokey $u"; fi
done
