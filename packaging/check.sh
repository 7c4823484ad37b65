#!/usr/bin/env bash
# Checks the packaging where neither docker nor a running systemd is available (what CI can do):
# the unit passes `systemd-analyze verify`, its LimitNOFILE fits the default max_connections,
# and the Dockerfile is multi-stage, runs as non-root, exposes the ports of the default config
# and starts the binary with the config path it ships. Usage: packaging/check.sh [RILL_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/rill}
fail() { echo "packaging: FAIL: $*" >&2; exit 1; }
[ -x "$bin" ] || fail "no rill binary at $bin (cargo build -p rill first)"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (apt-get install systemd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
config=$("$bin" --print-config)
setting() { printf '%s\n' "$config" | sed -n "s/^$1 = //p" | head -n 1 | tr -d '"'; }

# The unit, pointing at the binary just built (verify checks that ExecStart exists).
sed "s|/usr/local/bin/rill|$(realpath "$bin")|" packaging/rill.service > "$tmp/rill.service"
out=$(systemd-analyze verify "$tmp/rill.service" 2>&1) || fail "systemd-analyze verify: $out"
# Warnings about the unit itself (not about other units of this machine) fail too.
if printf '%s\n' "$out" | grep -q "rill.service"; then fail "systemd-analyze verify: $out"; fi
max=$(setting max_connections)
nofile=$(sed -n 's/^LimitNOFILE=//p' packaging/rill.service)
[ "$nofile" -ge $((max + 256)) ] || fail "LimitNOFILE=$nofile < max_connections $max + 256"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' packaging/rill.service || fail "no SIGHUP reload"

# The Dockerfile.
df=packaging/Dockerfile
[ "$(grep -c '^FROM ' "$df")" -ge 2 ] || fail "Dockerfile is not multi-stage"
grep -q '^FROM .* AS build$' "$df" || fail "no build stage"
user=$(sed -n 's/^USER //p' "$df" | tail -n 1)
case "$user" in ""|root|0|0:*) fail "the image runs as root" ;; esac
expose=" $(sed -n 's/^EXPOSE //p' "$df") "
for key in rtmp http rtsp; do
  port=$(printf '%s\n' "$config" | sed -n "/^\[$key\]/,/^\[/s/^addr = \"[^\"]*:\([0-9]*\)\"/\1/p" | head -n 1)
  [ -n "$port" ] || fail "no [$key] addr in the default config"
  [[ "$expose" == *" $port/tcp "* ]] || fail "Dockerfile does not expose $key port $port"
done
udp="$(setting udp_port_min)-$(setting udp_port_max)/udp"
[[ "$expose" == *" $udp "* ]] || fail "Dockerfile does not expose the RTSP UDP ports $udp"
grep -q '^ENTRYPOINT \["/usr/local/bin/rill", "--config", "/etc/rill/rill.toml"\]$' "$df" \
  || fail "ENTRYPOINT does not start /usr/local/bin/rill with /etc/rill/rill.toml"
grep -q 'COPY --from=build .*/etc/rill/rill.toml /etc/rill/rill.toml' "$df" || fail "no default config"
[ -f .dockerignore ] && grep -qx 'target' .dockerignore || fail ".dockerignore must leave out target"
echo "packaging: ok"
