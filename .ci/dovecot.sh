#!/bin/sh
# Install the Dovecot IMAP server for the test suite when it is missing.
# The package must not start the system service: the tests run their own
# instance with their own configuration, and CI machines have no systemd.
set -eu

if command -v dovecot >/dev/null 2>&1 && command -v doveadm >/dev/null 2>&1; then
    echo "dovecot already installed: $(dovecot --version)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "dovecot is missing and installing it needs root" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
    backup=$(mktemp)
    cp -p "$policy" "$backup"
fi
# 101 = "action forbidden": invoke-rc.d then starts no service while the package installs.
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"
cleanup() {
    if [ -n "$backup" ]; then
        mv "$backup" "$policy"
    else
        rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends dovecot-imapd

echo "dovecot installed: $(dovecot --version)"
