#!/usr/bin/env python3
"""Load benchmark: authgate against nginx, on one machine, over loopback.

Started by benches/load.sh (which installs the tools and builds the release binary).
Everything it starts it stops, by PID, also on Ctrl-C or a failure.

Processes:
  upstream   nginx, one process, `return 200` (the resource server for every target)
  nginx      nginx `proxy_pass` to the upstream with keep-alive: plain HTTP/1.1 on one
             port, TLS (HTTP/1.1 and h2) on another; workers = CPUs, access log on
  authgate   the release binary in front of the same upstream: a route that needs a
             token with `items.r` for GET, plain HTTP ("serve" mode) and HTTPS listeners,
             embedded SQLite store, access log on

Scenarios (each round runs the targets in turn, A B A B ..., after one warm-up each):
  http1        wrk, HTTP/1.1 keep-alive, plain: nginx proxy_pass vs authgate
  http1-tls    wrk, HTTP/1.1 keep-alive over TLS: nginx TLS vs authgate HTTPS
  h2-tls       h2load, HTTP/2 over TLS: nginx TLS vs authgate HTTPS
  issue        wrk POSTing client_credentials requests to authgate's token endpoint;
               afterwards the store must hold at least as many tokens as were answered

Every request through authgate carries a real token obtained from its own token
endpoint; the script checks first that the route refuses a request without it (401).
A round with any non-2xx response, socket error or timeout fails the run; so does an
access log that shows a status other than 200 (wrk does not count 3xx as errors).

CPU per request is (utime + stime) of the proxy's processes (nginx: master and
workers) from /proc/PID/stat before and after the round, divided by the requests the
round completed. Unlike req/s it does not depend on how the two cores are shared
between the load generator, the proxy and the upstream.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "authgate"
TICK = os.sysconf("SC_CLK_TCK")
SECRET = "load-benchmark-secret-0123456789abcdef"


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A started process, stopped by PID."""

    started = []

    def __init__(self, name, cmd, log, env=None):
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        self.pid = self.popen.pid
        Proc.started.append(self)

    def tree(self):
        """This process and its descendants (nginx master + workers)."""
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return pids

    def cpu_seconds(self):
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def rss_kib(self):
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.popen.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait()

    @classmethod
    def stop_all(cls):
        for p in reversed(cls.started):
            try:
                p.stop()
            except OSError:
                pass
        cls.started.clear()


def wait_port(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise Failure(f"{proc.name} exited at start; see {proc.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"{proc.name} did not listen on {port} within {timeout}s; see {proc.log}")


def nginx_bin():
    for c in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if c and os.access(c, os.X_OK):
            return c
    raise Failure("nginx not found (benches/load.sh installs it)")


def write(path, text):
    path.write_text(text)
    return path


def upstream_conf(work, port):
    return write(
        work / "upstream.conf",
        f"""
worker_processes 1;
daemon off;
master_process off;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp-upstream;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""",
    )


def nginx_conf(work, plain, tls, upstream, cert, key, workers):
    return write(
        work / "nginx.conf",
        f"""
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log {work}/nginx-access.log;
    client_body_temp_path {work}/tmp-nginx;
    proxy_temp_path {work}/tmp-nginx-proxy;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{plain} backlog=4096;
        listen 127.0.0.1:{tls} ssl http2 backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""",
    )


def authgate_conf(work, https, plain, upstream):
    return write(
        work / "authgate.toml",
        f"""
[server]
https = "127.0.0.1:{https}"
http = "127.0.0.1:{plain}"
http_mode = "serve"

[tls]
cert = "{work}/cert.pem"
key = "{work}/key.pem"
self_signed_if_missing = true

[log]
level = "info"

[store]
url = "sqlite://{work}/authgate.db"
sweep_interval = "off"

[oauth]
access_token_ttl = "1h"

# No [rate_limits]: request rates are off by default, and failure counts never refuse a
# client that authenticates. (Keys only the current build knows would also stop a
# --baseline build of an earlier commit from starting.)

[[client]]
id = "bench"
secret = "{SECRET}"
grants = ["client_credentials"]
scopes = "items.r"

[[route]]
path = "/"
upstream = "http://127.0.0.1:{upstream}"
perimeter = "items"
""",
    )


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


BASIC = "Basic " + base64.b64encode(f"bench:{SECRET}".encode()).decode()
TOKEN_BODY = "grant_type=client_credentials&scope=items.r"


def get_token(port):
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}/oauth/token",
        data=TOKEN_BODY.encode(),
        headers={
            "Authorization": BASIC,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(req, context=insecure(), timeout=10) as r:
        return json.load(r)["access_token"]


def status_of(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=insecure(), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url, args, headers=(), script=None):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    cmd += ["--latency", "--timeout", "5s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise Failure(f"wrk failed: {text}")
    m = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", text, re.M))
    if not (m and rps and "50" in lat and "99" in lat):
        raise Failure(f"cannot read wrk's output:\n{text}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if bad or errs:
        raise Failure(f"{url}: errors in the round:\n{text}")

    def ms(s):
        v, u = re.match(r"([\d.]+)(\w+)", s).groups()
        return to_ms(v, u)

    return {
        "requests": int(m.group(1)),
        "rps": float(rps.group(1)),
        "p50": ms(lat["50"]),
        "p99": ms(lat["99"]),
    }


def run_h2load(url, args, headers, work):
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = ["h2load", "-D", str(args.duration), "--warm-up-time", "1"]
    cmd += ["-c", str(args.h2_clients), "-m", str(args.h2_streams), "-t", "1"]
    cmd += ["--log-file", str(log)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise Failure(f"h2load failed: {text}")
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (req and codes):
        raise Failure(f"cannot read h2load's output:\n{text}")
    _, _, done, ok, failed, errored, timeout = map(int, req.groups())
    if failed or errored or timeout or int(codes.group(2)) or int(codes.group(3)) or int(codes.group(4)):
        raise Failure(f"{url}: errors in the round:\n{text}")
    times = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                if parts[1] != "200":
                    raise Failure(f"{url}: h2load logged status {parts[1]}")
                times.append(int(parts[2]) / 1000.0)
    if not times:
        raise Failure(f"{url}: h2load logged no requests")
    times.sort()
    return {
        "requests": ok,
        "rps": len(times) / args.duration,
        "p50": times[len(times) // 2],
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
    }


class LogCheck:
    """Counts access log lines written during a round and their non-200 statuses."""

    def __init__(self, path, pattern):
        self.path = path
        self.pattern = re.compile(pattern)
        self.offset = 0

    def mark(self):
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def check(self, what, in_flight):
        """Every logged status is 200, but for at most `in_flight` 499s (nginx: the
        client closed the connection): the requests still in flight when the load
        generator stopped at its deadline."""
        lines = bad = closed = 0
        other = None
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for raw in f:
                m = self.pattern.search(raw.decode(errors="replace"))
                if not m:
                    continue
                lines += 1
                if m.group(1) == "499":
                    closed += 1
                elif m.group(1) != "200":
                    bad += 1
                    other = other or m.group(1)
        if closed > in_flight:
            bad += closed
            other = other or "499"
        if bad:
            raise Failure(f"{what}: {bad} responses were not 200 (e.g. {other}); see {self.path}")
        return lines


def measure(target, runner, in_flight):
    proc, logcheck = target["proc"], target["log"]
    logcheck.mark()
    before = proc.cpu_seconds()
    result = runner()
    after = proc.cpu_seconds()
    logged = logcheck.check(target["name"], in_flight)
    if logged < result["requests"]:
        raise Failure(
            f"{target['name']}: {result['requests']} requests completed but only {logged} were logged"
        )
    result["cpu_us"] = (after - before) * 1e6 / max(1, result["requests"])
    return result


def scenario(name, targets, runner, args, results, in_flight):
    print(f"\n== {name}", flush=True)
    for t in targets:
        runner(t, warmup=True)
    for r in range(args.rounds):
        for t in targets:
            res = measure(t, lambda: runner(t, warmup=False), in_flight)
            print(
                f"  round {r + 1} {t['name']:<22} {res['rps']:>10.0f} req/s  "
                f"p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms  "
                f"cpu {res['cpu_us']:.1f} µs/req",
                flush=True,
            )
            results.setdefault(name, {}).setdefault(t["name"], []).append(res)


def summarize(results):
    rows = []
    for scen, targets in results.items():
        base = None
        for name, runs in targets.items():
            med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu_us")}
            if base is None:
                base = med
            rows.append((scen, name, len(runs), med, base))
    return rows


def table(rows, meta):
    out = [
        "| scenario | target | rounds | req/s (median) | p50 ms | p99 ms | req/s vs first | CPU µs/req | CPU vs first |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scen, name, n, med, base in rows:
        out.append(
            f"| {scen} | {name} | {n} | {med['rps']:.0f} | {med['p50']:.2f} | {med['p99']:.2f} "
            f"| {med['rps'] / base['rps']:.2f}× | {med['cpu_us']:.1f} | {med['cpu_us'] / base['cpu_us']:.2f}× |"
        )
    out.append("")
    for k, v in meta.items():
        out.append(f"- {k}: {v}")
    return "\n".join(out)


def plot(rows, work):
    if not shutil.which("gnuplot"):
        return None
    data = work / "plot.dat"
    with open(data, "w") as f:
        for scen, name, _, med, _ in rows:
            f.write(f'"{scen}\\n{name}" {med["rps"]:.0f} {med["p99"]:.3f}\n')
    png = work / "load.png"
    script = f"""
set terminal pngcairo size 1200,520 font "sans,10"
set output "{png}"
set multiplot layout 1,2 title "authgate vs nginx on loopback (median of rounds)"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -30 noenhanced
set grid ytics
set title "requests per second (higher is better)"
plot "{data}" using 2:xtic(1) notitle lc rgb "#3b7dd8"
set title "p99 latency, ms (lower is better)"
plot "{data}" using 3:xtic(1) notitle lc rgb "#d8703b"
unset multiplot
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        # pngcairo is missing from some gnuplot builds: fall back to the plain png terminal.
        script = script.replace('pngcairo size 1200,520 font "sans,10"', "png size 1200,520")
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
        if r.returncode != 0:
            print(f"gnuplot failed: {r.stderr}", file=sys.stderr)
            return None
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per target (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per round (default 10)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--h2-clients", type=int, default=8, help="h2load clients (default 8)")
    ap.add_argument("--h2-streams", type=int, default=16, help="h2load streams per client (default 16)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="nginx workers (default: CPUs)")
    ap.add_argument("--only", action="append", choices=["http1", "http1-tls", "h2-tls", "issue"],
                    help="run only these scenarios (repeat)")
    ap.add_argument("--serve", action="store_true",
                    help="start everything, print the ports, PIDs and a token, and wait (for profiling by hand)")
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s: checks the script works")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another authgate binary (e.g. a build of an earlier commit) measured in the same "
                         "rounds, A B C A B C, so both see the same machine noise")
    ap.add_argument("--work", default=str(ROOT / "target" / "load"), help="output folder")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 3
    scenarios = args.only or ["http1", "http1-tls", "h2-tls", "issue"]

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for d in ("tmp-upstream", "tmp-nginx", "tmp-nginx-proxy"):
        (work / d).mkdir()
    if not BIN.exists():
        raise Failure(f"{BIN} is missing: run benches/load.sh (it builds it)")

    up, ng_plain, ng_tls, ag_https, ag_plain = (free_port() for _ in range(5))
    nginx = nginx_bin()

    upstream = Proc("upstream", [nginx, "-c", str(upstream_conf(work, up)), "-e", str(work / "upstream-error.log")],
                    work / "upstream.out")
    wait_port(up, upstream)

    ag_log = work / "authgate.log"
    env = dict(os.environ, NO_COLOR="1")
    authgate = Proc("authgate", [str(BIN), "--config", str(authgate_conf(work, ag_https, ag_plain, up)), "serve"],
                    ag_log, env=env)
    wait_port(ag_https, authgate)
    wait_port(ag_plain, authgate)
    time.sleep(0.5)
    idle_rss = authgate.rss_kib()

    ng = Proc("nginx", [nginx, "-c", str(nginx_conf(work, ng_plain, ng_tls, up, work / "cert.pem", work / "key.pem", args.workers)),
                         "-e", str(work / "nginx-error.log")], work / "nginx.out")
    wait_port(ng_plain, ng)
    wait_port(ng_tls, ng)

    # Authentication is on: no token, no entry; a real token from the token endpoint works.
    no_token = status_of(f"http://127.0.0.1:{ag_plain}/items")
    if no_token != 401:
        raise Failure(f"authgate answered {no_token} without a token; expected 401")
    token = get_token(ag_https)
    tokens = {"authgate": token, "authgate-tls": token}
    baseline = None
    if args.baseline:
        bwork = work / "baseline"
        bwork.mkdir()
        b_https, b_plain = free_port(), free_port()
        baseline = Proc("authgate-baseline",
                        [args.baseline, "--config", str(authgate_conf(bwork, b_https, b_plain, up)), "serve"],
                        bwork / "authgate.log", env=env)
        wait_port(b_https, baseline)
        wait_port(b_plain, baseline)
        btoken = get_token(b_https)
        tokens.update({"baseline": btoken, "baseline-tls": btoken})
    for url in (f"http://127.0.0.1:{ag_plain}/items", f"https://127.0.0.1:{ag_https}/items"):
        s = status_of(url, {"Authorization": f"Bearer {token}"})
        if s != 200:
            raise Failure(f"{url} with a valid token answered {s}")

    if args.serve:
        print(f"upstream    pid {upstream.pid}  http://127.0.0.1:{up}/")
        print(f"nginx       pid {ng.pid}  http://127.0.0.1:{ng_plain}/  https://127.0.0.1:{ng_tls}/")
        print(f"authgate    pid {authgate.pid}  http://127.0.0.1:{ag_plain}/  https://127.0.0.1:{ag_https}/")
        print(f"token       {token}")
        print("serving until Ctrl-C", flush=True)
        while all(p.alive() for p in (upstream, ng, authgate)):
            time.sleep(1)
        raise Failure("a process exited")

    ng_check = LogCheck(work / "nginx-access.log", r'" (\d{3}) \d+ "')
    ag_check = LogCheck(ag_log, r"authgate::access.*status=(\d{3})")
    targets = {
        "nginx": {"name": "nginx proxy_pass", "proc": ng, "log": ng_check},
        "authgate": {"name": "authgate (auth)", "proc": authgate, "log": ag_check},
        "nginx-tls": {"name": "nginx TLS", "proc": ng, "log": ng_check},
        "authgate-tls": {"name": "authgate TLS (auth)", "proc": authgate, "log": ag_check},
        "issue": {"name": "authgate token endpoint", "proc": authgate, "log": ag_check},
    }
    if baseline:
        b_check = LogCheck(work / "baseline" / "authgate.log", r"authgate::access.*status=(\d{3})")
        targets["baseline"] = {"name": "authgate baseline", "proc": baseline, "log": b_check}
        targets["baseline-tls"] = {"name": "authgate baseline TLS", "proc": baseline, "log": b_check}
    extra = ["baseline"] if baseline else []
    extra_tls = ["baseline-tls"] if baseline else []
    urls = {
        "nginx": f"http://127.0.0.1:{ng_plain}/items",
        "authgate": f"http://127.0.0.1:{ag_plain}/items",
        "nginx-tls": f"https://127.0.0.1:{ng_tls}/items",
        "authgate-tls": f"https://127.0.0.1:{ag_https}/items",
    }
    if baseline:
        urls["baseline"] = f"http://127.0.0.1:{b_plain}/items"
        urls["baseline-tls"] = f"https://127.0.0.1:{b_https}/items"
    results = {}

    def wrk_runner(key):
        def run(t, warmup):
            a = argparse.Namespace(**vars(args))
            if warmup:
                a.duration = 2
            return run_wrk(urls[key], a, headers=[f"Authorization: Bearer {tokens.get(key, token)}"])
        return run

    def by_target(keys, make):
        table = {targets[k]["name"]: make(k) for k in keys}
        return [targets[k] for k in keys], lambda t, warmup: table[t["name"]](t, warmup)

    if "http1" in scenarios:
        ts, run = by_target(["nginx", "authgate"] + extra, wrk_runner)
        scenario("http1", ts, run, args, results, args.connections)
    if "http1-tls" in scenarios:
        ts, run = by_target(["nginx-tls", "authgate-tls"] + extra_tls, wrk_runner)
        scenario("http1-tls", ts, run, args, results, args.connections)
    if "h2-tls" in scenarios:
        def h2_runner(key):
            def run(t, warmup):
                a = argparse.Namespace(**vars(args))
                if warmup:
                    a.duration = 2
                return run_h2load(urls[key], a, [f"authorization: Bearer {tokens.get(key, token)}"], work)
            return run
        ts, run = by_target(["nginx-tls", "authgate-tls"] + extra_tls, h2_runner)
        scenario("h2-tls", ts, run, args, results, args.h2_clients * args.h2_streams)
    if "issue" in scenarios:
        lua = write(
            work / "token.lua",
            f'wrk.method = "POST"\nwrk.body = "{TOKEN_BODY}"\n'
            f'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
            f'wrk.headers["Authorization"] = "{BASIC}"\n',
        )
        def stored(db):
            out = subprocess.run(
                ["sqlite3", str(db), "SELECT count(*) FROM tokens WHERE client_id = 'bench'"],
                capture_output=True, text=True,
            )
            if out.returncode != 0:
                raise Failure(f"cannot count stored tokens: {out.stderr}")
            return int(out.stdout.strip())

        # Each authgate's token endpoint, and the database it writes to.
        issuers = {"authgate token endpoint": (ag_https, work / "authgate.db")}
        issue_targets = [targets["issue"]]
        if baseline:
            targets["baseline-issue"] = {"name": "authgate baseline token endpoint",
                                         "proc": baseline, "log": b_check}
            issuers[targets["baseline-issue"]["name"]] = (b_https, work / "baseline" / "authgate.db")
            issue_targets.append(targets["baseline-issue"])

        def issue(t, warmup):
            a = argparse.Namespace(**vars(args))
            if warmup:
                a.duration = 2
            port, db = issuers[t["name"]]
            before = stored(db)
            res = run_wrk(f"https://127.0.0.1:{port}/oauth/token", a, script=lua)
            after = stored(db)
            if after - before < res["requests"]:
                raise Failure(f"{res['requests']} tokens answered but {after - before} stored")
            return res

        scenario("issue", issue_targets, issue, args, results, args.connections)

    loaded_rss = authgate.rss_kib()
    rows = summarize(results)
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    meta = {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {os.uname().sysname} {os.uname().release}",
        "load": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s; "
                f"h2load -c{args.h2_clients} -m{args.h2_streams} -D{args.duration}; {args.rounds} rounds, alternating",
        "nginx": subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
                 + f", {args.workers} workers, access log on",
        "authgate idle RSS": f"{idle_rss / 1024:.1f} MiB (after start, before load); after the run {loaded_rss / 1024:.1f} MiB",
    }
    text = table(rows, meta)
    (work / "results.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps({"results": results, "meta": meta}, indent=1))
    png = plot(rows, work)
    print("\n" + text)
    if png:
        print(f"\nplot: {png}")
    print(f"results: {work / 'results.md'}")


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    code = 0
    try:
        main()
    except Failure as e:
        print(f"load: FAILED: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("load: interrupted", file=sys.stderr)
        code = 130
    finally:
        Proc.stop_all()
    sys.exit(code)
