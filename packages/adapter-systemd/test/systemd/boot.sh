#!/usr/bin/env bash
# Boots the real systemd as PID 1 of the private pid+mount namespace this runs in (started by
# `unshare --fork --pid --mount --mount-proc --propagation private`), on an overlay of / whose
# upper layer is a tmpfs: every write systemd or the service makes (its boot-time /tmp cleanup
# included) stays in this namespace and vanishes with it. Nothing is mounted or written outside.
# The units to install come in OPENRTC_E2E_UNITS, a JSON object of relative path → content
# (e.g. "openrtc-worker.service.d/e2e.conf"), so not even the test's own files touch the host.
set -euo pipefail
: "${OPENRTC_E2E_UNITS:?boot.sh needs OPENRTC_E2E_UNITS}"
scratch=/srv
[ -d "$scratch" ] || { echo "boot.sh: $scratch is missing" >&2; exit 1; }
# Private propagation (unshare) keeps every mount below out of the host's view.
mount -t tmpfs -o mode=0755 openrtc-e2e "$scratch"
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
root="$scratch/root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
# Its own cgroup tree: a cgroup2 mount made inside this cgroup namespace shows only the cgroup the
# test created for it, so systemd never sees, creates in or moves processes out of the host's.
umount -R "$root/sys/fs/cgroup"
mount -t cgroup2 -o nsdelegate cgroup2 "$root/sys/fs/cgroup"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
# The checkout the worker runs from, when it lives under /tmp (CI clones may): the tmpfs above
# hides it, so it is bound in again, read-only (nothing in the namespace writes to the host).
if [ -n "${OPENRTC_E2E_CHECKOUT:-}" ] && [[ "$OPENRTC_E2E_CHECKOUT" == /tmp/* ]]; then
  mkdir -p "$root$OPENRTC_E2E_CHECKOUT"
  mount --bind "$OPENRTC_E2E_CHECKOUT" "$root$OPENRTC_E2E_CHECKOUT"
  mount -o remount,bind,ro "$root$OPENRTC_E2E_CHECKOUT"
fi
node -e '
  const fs = require("node:fs"), path = require("node:path");
  const dir = path.join(process.argv[1], "etc/systemd/system");
  for (const [name, text] of Object.entries(JSON.parse(process.env.OPENRTC_E2E_UNITS))) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    if (text === "@mask") fs.symlinkSync("/dev/null", path.join(dir, name));
    else fs.writeFileSync(path.join(dir, name), text);
  }' "$root"
unset OPENRTC_E2E_UNITS
echo "BOOTING $$"
exec chroot "$root" /lib/systemd/systemd --system --unit=openrtc-e2e.target
