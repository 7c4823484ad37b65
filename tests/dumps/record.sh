#!/usr/bin/env bash
# Records the RTMP dumps in this directory: a running rill with recording proxies (rill-replay record)
# in front of it, an ffmpeg RTMP push of 3 s of the test file, then an RTMP player (rtmpdump)
# and an HTTP-FLV player (ffprobe) that start about a second later.
# Usage: tests/dumps/record.sh [MEDIA]   (from the repository root; builds rill and rill-replay)
# The RTSP dumps (rtsp_*.rilldump) come from record-rtsp.sh.
set -euo pipefail
MEDIA=${1:-/work/shared/media/h264_aac_10s.flv}
DIR=$(cd "$(dirname "$0")" && pwd)
RTMP=127.0.0.1:42935 HTTP=127.0.0.1:42080
PUB=127.0.0.1:42936 PLAY=127.0.0.1:42937 HPLAY=127.0.0.1:42081
cargo build -q -p rill -p rill-replay
BIN=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$BIN/rill" --rtmp-addr $RTMP --http-addr $HTTP --workers 1 2>/tmp/rill-record.log & pids+=($!)
"$BIN/rill-replay" record --listen $PUB --to $RTMP --kind rtmp --out "$DIR/rtmp_publish.rilldump" & pids+=($!)
"$BIN/rill-replay" record --listen $PLAY --to $RTMP --kind rtmp --out "$DIR/rtmp_play.rilldump" & pids+=($!)
"$BIN/rill-replay" record --listen $HPLAY --to $HTTP --kind http --out "$DIR/http_flv_play.rilldump" & pids+=($!)
sleep 1
ffmpeg -v error -re -t 3 -i "$MEDIA" -c copy -f flv rtmp://$PUB/live/d & push=$!
sleep 1
rtmpdump -q -r rtmp://$PLAY/live/d --live -o /dev/null & rplay=$!
ffprobe -v error -show_entries stream=codec_name http://$HPLAY/live/d.flv
wait $push
wait $rplay || true
sleep 1
ls -l "$DIR"/*.rilldump
