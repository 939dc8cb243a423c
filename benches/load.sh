#!/usr/bin/env bash
# Load benchmark: authgate against nginx on this machine, over loopback.
#
#   benches/load.sh            # full run: 3 rounds of each target per scenario
#   benches/load.sh --quick    # 1 round, short runs (a smoke check of the script)
#   benches/load.sh --help     # all options
#
# Installs what it needs from Debian if missing (wrk, nginx, h2load, gnuplot), builds
# authgate in release mode, then hands over to benches/load.py, which starts every
# process, runs the rounds, prints the table and stops everything it started.
# Results go to target/load/ (results.md, results.json, load.png, logs).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
    echo "load: installing ${need[*]} from Debian" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release --quiet
exec python3 benches/load.py "$@"
