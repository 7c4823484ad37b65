#!/usr/bin/env bash
# Reproduce the RTMP byte-stream fixtures in core/tests/fixtures/ from real clients.
#
#   (a) ffmpeg publishes a file to an `ffmpeg -listen 1` RTMP server
#       -> ffmpeg_publish_c2s.bin, ffmpeg_publish_s2c.bin
#   (b) rtmpdump plays from an `ffmpeg -listen 1` RTMP server that is fed the same file
#       -> rtmpdump_play_c2s.bin, rtmpdump_play_s2c.bin
#   (c) as (b), with `-w HASH -x SIZE` so that librtmp uses its complex (FP9) handshake
#       -> rtmpdump_fp9_play_c2s.bin, rtmpdump_fp9_play_s2c.bin
#
# Each exchange is captured on the loopback interface with dumpcap, then tshark extracts the TCP
# payload of each direction (in capture order; loopback does not reorder), hex -> binary, and only
# the first $KEEP bytes are kept (handshake, commands and the first media).
#
# Needs: ffmpeg, rtmpdump, tshark/dumpcap (root or the wireshark group), xxd.
# Usage: tools/capture-fixtures.sh   (from the repository root; PORT, MEDIA and KEEP may be set)
set -euo pipefail

MEDIA=${MEDIA:-/work/shared/media/h264_aac_10s.flv}
PORT=${PORT:-19573}
KEEP=${KEEP:-65536}
OUT=${OUT:-core/tests/fixtures}
URL="rtmp://127.0.0.1:$PORT/live/test"

if ss -ltn | grep -q ":$PORT "; then
    echo "port $PORT is in use; set PORT=..." >&2
    exit 1
fi

mkdir -p "$OUT"
tmp=$(mktemp -d)
pids=()
cleanup() {
    # Only the processes this script started.
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

start_capture() { # $1 = pcap file
    dumpcap -q -i lo -f "tcp port $PORT" -w "$1" 2>"$tmp/dumpcap.log" &
    cap=$!
    pids+=("$cap")
    # Wait until dumpcap has the interface open.
    for _ in $(seq 50); do
        grep -q "Capturing on" "$tmp/dumpcap.log" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
}

stop_capture() {
    sleep 0.5
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
}

wait_listen() {
    for _ in $(seq 100); do
        ss -ltn | grep -q ":$PORT " && return 0
        sleep 0.1
    done
    echo "server did not listen on $PORT" >&2
    exit 1
}

extract() { # $1 = pcap, $2 = display filter, $3 = output file
    tshark -r "$1" -Y "$2 && tcp.len > 0" -T fields -e tcp.payload \
        | tr -d ':\n' | xxd -r -p >"$tmp/all.bin"
    head -c "$KEEP" "$tmp/all.bin" >"$3"
    echo "$3: $(stat -c %s "$3") bytes"
}

# (a) ffmpeg publish
start_capture "$tmp/publish.pcapng"
ffmpeg -nostdin -hide_banner -loglevel error -listen 1 -i "$URL" -f null - &
srv=$!
pids+=("$srv")
wait_listen
ffmpeg -nostdin -hide_banner -loglevel error -re -i "$MEDIA" -c copy -t 3 -f flv "$URL"
wait "$srv" || true
stop_capture
extract "$tmp/publish.pcapng" "tcp.dstport == $PORT" "$OUT/ffmpeg_publish_c2s.bin"
extract "$tmp/publish.pcapng" "tcp.srcport == $PORT" "$OUT/ffmpeg_publish_s2c.bin"

play() { # $1 = output prefix, rest = extra rtmpdump options
    local prefix=$1
    shift
    start_capture "$tmp/$prefix.pcapng"
    ffmpeg -nostdin -hide_banner -loglevel error -re -i "$MEDIA" -c copy -f flv -listen 1 "$URL" &
    srv=$!
    pids+=("$srv")
    wait_listen
    rtmpdump -q -r "$URL" -o "$tmp/$prefix.flv" -B 3 "$@" || true
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    stop_capture
    extract "$tmp/$prefix.pcapng" "tcp.dstport == $PORT" "$OUT/${prefix}_c2s.bin"
    extract "$tmp/$prefix.pcapng" "tcp.srcport == $PORT" "$OUT/${prefix}_s2c.bin"
}

# (b) rtmpdump play, plain: librtmp sends a simple C1 (zero version field).
play rtmpdump_play

# (c) rtmpdump play with a SWF hash and size (values are arbitrary, the server does not check them):
#     librtmp then switches to its Flash Player 9 handshake, a complex C1 with a digest.
play rtmpdump_fp9_play -w "$(printf '0%.0s' $(seq 64))" -x 1000
