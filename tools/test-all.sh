#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this).
# Works on a fresh Debian machine with Rust: installs the real clients the end-to-end tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
{ command -v ffmpeg && command -v ffprobe; } >/dev/null 2>&1 || missing+=(ffmpeg)
command -v rtmpdump >/dev/null 2>&1 || missing+=(rtmpdump)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# GStreamer's rtspclientsink publishing the H.264 + AAC test file (AAC sent as MP4A-LATM).
command -v gst-launch-1.0 >/dev/null 2>&1 || missing+=(gstreamer1.0-tools)
gst-inspect-1.0 rtspclientsink >/dev/null 2>&1 || missing+=(gstreamer1.0-rtsp)
gst-inspect-1.0 h264parse >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)
gst-inspect-1.0 rtpmp4apay >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-good)
# The client matrix (tests/e2e/matrix.rs): GStreamer's RTMP (rtmp2src/rtmp2sink), HTTP
# (souphttpsrc), demuxers (flvdemux, tsdemux, hlsdemux), decoders (avdec_*); VLC with the dummy
# interface (run as a non-root user the test creates); runuser (util-linux) to switch to it.
gst-inspect-1.0 rtmp2src >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)
gst-inspect-1.0 hlsdemux >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)
gst-inspect-1.0 tsdemux >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)
gst-inspect-1.0 souphttpsrc >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-good)
gst-inspect-1.0 flvdemux >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-good)
gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 || missing+=(gstreamer1.0-libav)
command -v cvlc >/dev/null 2>&1 || missing+=(vlc-bin vlc-plugin-base)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# The browser tests (tests/e2e/browser.rs): Debian's Chromium, and node/npm, with which the
# test installs playwright-core and hls.js into target/browser-harness (never a downloaded browser).
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# nginx-rtmp: the third-party server of the relay tests (tests/e2e/relay_nginx.rs).
{ command -v nginx && [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; } >/dev/null 2>&1 \
  || missing+=(nginx-light libnginx-mod-rtmp)
# A C compiler and make: the binaries' allocator (tikv-jemallocator) builds jemalloc from source.
{ command -v cc && command -v make; } >/dev/null 2>&1 || missing+=(gcc make)
# pip, to install imageio-ffmpeg (a current ffmpeg) below.
command -v pip3 >/dev/null 2>&1 || missing+=(python3-pip)
# Redis: the registry of the cluster tests (tests/e2e/cluster.rs).
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A current ffmpeg (9) for the AV1 tests (tests/e2e/av1.rs) and the codec cells of the matrix
# (Enhanced RTMP HEVC, AV1, Opus): Debian's 5.1 has neither AV1 over RTP nor Enhanced RTMP;
# PyPI's imageio-ffmpeg wheel ships a static build (rill_e2e::current_ffmpeg finds it).
if ! python3 -c 'import imageio_ffmpeg' >/dev/null 2>&1; then
  echo "== installing imageio-ffmpeg (pip)"
  pip3 install -q imageio-ffmpeg || pip3 install -q --break-system-packages imageio-ffmpeg
fi
python3 -c 'import imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe()' >/dev/null \
  || { echo "FATAL: imageio-ffmpeg (a current ffmpeg) is required and could not be installed" >&2; exit 1; }
for tool in ffmpeg ffprobe rtmpdump curl node npm chromium gst-launch-1.0 cvlc; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is required and could not be installed" >&2; exit 1; }
done

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== format"
cargo fmt --all --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build"
cargo build --workspace
echo "== packaging (systemd unit verified, Dockerfile checked; no docker needed)"
bash packaging/check.sh target/debug/rill
echo "== tests (unit, property, fixtures, end-to-end)"
cargo test --workspace
echo "== end-to-end tests again, against rill-async (the async-std runtime)"
RILL_BIN=target/debug/rill-async cargo test -p rill-e2e
echo "== fuzz harness tests (seed files, harness checks)"
(cd fuzz && cargo test --lib)
echo "== fuzz smoke (each target briefly)"
bash tools/fuzz.sh "${FUZZ_SECONDS:-8}"
echo "== all tests passed"
