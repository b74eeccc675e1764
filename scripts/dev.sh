#!/usr/bin/env bash
# One entry point for a fresh machine: installs what the project needs (apt packages,
# the pinned pnpm's packages), then runs the asked-for job. Idempotent: a second run only
# checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1
export DO_NOT_TRACK=1

need_prometheus=0
case "${1:-}" in test|bench|setup) need_prometheus=1 ;; esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "$need_prometheus" = 1 ] && { ! command -v promtool >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1 || ! command -v strace >/dev/null 2>&1 || ! command -v tmux >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; }; then
  echo "openrtc: installing Debian's prometheus (promtool and a server for the end-to-end tests), systemd and python3 (adapter-systemd tests), chromium (the deploy page's browser test)" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus strace systemd python3 tmux chromium >&2
  # The package starts a system service where a service manager runs; tests start their own.
fi

PNPM=(npx -y pnpm@12.21.0)
if command -v pnpm >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "12.21.0" ]; then PNPM=(pnpm); fi

if [ -f pnpm-lock.yaml ]; then
  "${PNPM[@]}" install --frozen-lockfile --reporter=append-only >&2
else
  "${PNPM[@]}" install --reporter=append-only >&2
fi

job="${1:-}"; shift || true
case "$job" in
  test)  exec "${PNPM[@]}" exec turbo run typecheck test --concurrency=1 --output-logs=new-only "$@" ;;
  demo)  exec "${PNPM[@]}" --filter @openrtc/demo run start "$@" ;;
  chaos) exec "${PNPM[@]}" --filter @openrtc/demo run chaos "$@" ;;
  fuzz)  exec "${PNPM[@]}" --filter @openrtc/core run fuzz "$@" ;;
  bench) exec "${PNPM[@]}" -r --workspace-concurrency=1 --if-present run bench "$@" ;;
  setup) ;;
  *) echo "usage: scripts/dev.sh test|demo|chaos|fuzz|bench|setup [args]" >&2; exit 2 ;;
esac
