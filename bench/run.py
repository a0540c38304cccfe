#!/usr/bin/env python3
"""`make bench`: Relevo against nginx, HAProxy and Apache httpd, on one machine, with wrk.

What it measures
----------------
Three backends serve the same three files (a 1 KiB page, a 1 MiB file and a 100 MiB file).
In front of them run the proxies under test, each balancing over all three:

  relevo   target/release/proxy (logging at warn, so the log is not what we measure)
  nginx    one worker, upstream keep-alive (keepalive 64, proxy_http_version 1.1)
  haproxy  nbthread 1, http-reuse always
  apache   Apache httpd, worker MPM (threads, as Relevo), mod_proxy_balancer over the three,
           and mod_cache_disk for the cache cell: the thread-per-connection peer
  baseline another Relevo build (--baseline PATH), measured turn about with this one, so that a
           change is compared with what it changes under the same noise
  direct   no proxy: wrk talks straight to backend 1, the ceiling for every proxy

The backends are nginx serving static files when nginx is installed (so that the backend is
not the bottleneck), otherwise Relevo's own `webserver`.

Each cell is one load pattern:

  ka1k-N      the 1 KiB page over N keep-alive connections (wrk -t1 -cN)
  close1k-N   the same with `Connection: close` (a new TCP connection per request)
  cache-64    1 KiB cache hits over 64 connections: Relevo's cache against nginx proxy_cache
  1m-16       the 1 MiB file over 16 connections, reported in MiB/s
  100m-1      one 100 MiB download with curl, reported in MiB/s
  idle10k     10,000 idle keep-alive connections held by Relevo: its resident memory (fewer
              when the open-file limit cannot hold them below Relevo's pressure mark)

For each cell and target it reports the median of the repeats of: requests per second (or
MiB/s), the 99th percentile latency (from wrk --latency), and the proxy's CPU time per
request: user + system time of all the target's processes (from /proc/PID/stat) after the run
minus before, divided by the requests wrk completed. For `direct` that CPU column is the
backend's own cost. The goal column checks the targets of issue 17.

Then, when strace is installed, Relevo's system calls per request for each cell (and the
baseline's): one short run per cell with `strace -c -f` attached to every thread of the
proxy, the calls counted divided by the requests completed. strace slows the proxy down
many times over, so those runs are not timed; what they count is the same per request.

How
---
The proxies and the backends are pinned to one CPU and wrk (or curl) to another with
`taskset`, so the load generator does not steal the proxy's CPU. Everything listens on
127.0.0.1; every process is started by this script, waited for through the line it prints
once it listens (no sleeps), and stopped at the end, also on Ctrl-C. Configuration files, the
served files and the caches live in a temporary directory that is removed at the end.

The table goes to stdout and to bench/results/YYYYMMDD-HHMMSS.md; progress goes to stderr.
Only the Python 3 standard library is used. wrk, nginx and HAProxy come from the
distribution's packages; the script says how to install whichever is missing and never
installs anything itself.
"""

import argparse
import collections
import datetime
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
RELEASE = REPO / "target" / "release"
RESULTS_DIR = REPO / "bench" / "results"

KIB = 1024
MIB = 1024 * 1024

# The files every backend serves, by name, and their sizes in bytes.
PAGE_1K = "1k.html"
FILE_1M = "1m.bin"
FILE_100M = "100m.bin"

# How long a server may take to print its readiness line.
START_TIMEOUT_SECS = 20
# How long a server may take to stop after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT_SECS = 5
# wrk's per-request timeout; a request slower than this counts as a socket error.
WRK_TIMEOUT = "5s"

# idle10k: how many idle connections, opened how many at a time, and the memory goal.
IDLE_CONNECTIONS = 10_000
# Opened at most IDLE_BATCH at a time: fewer than the listen backlog of Rust's std (128), so
# no SYN is dropped and retried a second later.
IDLE_BATCH = 100
IDLE_RSS_GOAL_MIB = 256
# Relevo's client_timeout in the idle10k run: opening 10,000 connections must not take
# longer than the first one may stay idle (the other cells use 60 s).
IDLE_CLIENT_TIMEOUT_SECS = 600
# A socket operation in idle10k that takes longer than this is a failure.
IDLE_SOCKET_TIMEOUT_SECS = 10
# Relevo's max_connections in idle10k: 10,000 idle connections stay below the share of the
# slots above which Relevo shortens idle waits (PRESSURE_PERCENT in src/server/slots.rs).
IDLE_MAX_CONNECTIONS = 13_400
RELEVO_PRESSURE_PERCENT = 75
# Open files Relevo sets aside at start-up besides two per connection (src/server/open_files.rs):
# FD_RESERVE, and upstream_keepalive (32) idle connections for each of the three backends.
RELEVO_FD_RESERVE = 64 + 32 * 3

TARGETS = ("relevo", "baseline", "nginx", "haproxy", "apache", "direct")
TARGET_TITLES = {"relevo": "Relevo", "baseline": "baseline", "nginx": "nginx",
                 "haproxy": "HAProxy", "apache": "Apache", "direct": "direct"}
# The references Relevo's throughput is compared with, in the ratio columns.
REFERENCES = ("baseline", "nginx", "haproxy", "apache")
# Where Debian, Fedora and Arch keep Apache httpd's modules.
APACHE_MODULE_DIRS = ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules",
                      "/usr/lib/httpd/modules", "/usr/libexec/apache2")
# Apache's worker MPM: threads per child process, and at most this many threads in all
# (above the 256 connections of the largest cell).
APACHE_THREADS_PER_CHILD = 64
APACHE_MAX_WORKERS = 1024
# Threads Apache starts with: the largest cell's 256 connections and a child to spare.
APACHE_START_WORKERS = 320
# The short run per cell whose system calls strace counts, in seconds.
SYSCALL_RUN_SECS = 2

INSTALL = {
    "wrk": "sudo apt-get install -y wrk",
    "nginx": "sudo apt-get install -y nginx-light",
    "nginx-proxy": "sudo apt-get install -y nginx-full",
    "haproxy": "sudo apt-get install -y haproxy",
    "apache": "sudo apt-get install -y apache2",
    "strace": "sudo apt-get install -y strace",
    "curl": "sudo apt-get install -y curl",
    "taskset": "sudo apt-get install -y util-linux",
}


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One load pattern of the table."""

    name: str
    # "wrk" (many requests), "curl" (one big download) or "idle" (idle10k).
    kind: str
    path: str = "/" + PAGE_1K
    connections: int = 1
    close: bool = False
    cache: bool = False
    # Bytes per response when the cell is reported in MiB/s; 0 for requests per second.
    mib_per_response: float = 0.0
    # The goals: (reference target, minimum ratio of Relevo's throughput to it).
    goals: tuple = ()

    @property
    def unit(self) -> str:
        return "MiB/s" if self.mib_per_response else "req/s"


def _cells() -> List[Cell]:
    """The cells, with the goals of issue 17: every cell at least 1.2 times Apache's
    throughput, and the targets named per cell."""
    apache = ("apache", 1.2)
    cells = []
    for n in (1, 16, 64, 256):
        goals = (("nginx", 0.75), apache) if n == 64 else (apache,)
        cells.append(Cell(f"ka1k-{n}", "wrk", connections=n, goals=goals))
    for n in (1, 16, 64, 256):
        goals = (apache,) if n == 1 else (("nginx", 1.05), apache)
        cells.append(Cell(f"close1k-{n}", "wrk", connections=n, close=True, goals=goals))
    cells.append(Cell("cache-64", "wrk", connections=64, cache=True,
                      goals=(("nginx", 1.1), apache)))
    cells.append(Cell("1m-16", "wrk", path="/" + FILE_1M, connections=16, mib_per_response=1.0,
                      goals=(("nginx", 1.5), ("haproxy", 1.5), apache)))
    cells.append(Cell("100m-1", "curl", path="/" + FILE_100M, mib_per_response=100.0,
                      goals=(("direct", 0.85), apache)))
    cells.append(Cell("idle10k", "idle"))
    return cells


CELLS = _cells()
CELLS_BY_NAME = {c.name: c for c in CELLS}
QUICK_CELLS = ("ka1k-1", "ka1k-64", "close1k-64", "cache-64", "1m-16", "100m-1")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark Relevo against nginx and HAProxy with wrk (see the docstring "
        "at the top of this file for what is measured and how).",
        epilog="cells: " + ", ".join(c.name for c in CELLS)
        + ". Results go to stdout and bench/results/.",
    )
    parser.add_argument("--duration", type=int, default=5, metavar="SECS",
                        help="seconds per wrk run (default 5)")
    parser.add_argument("--repeats", type=int, default=3, metavar="N",
                        help="runs per cell and target; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="1 s x 1 run over fewer cells (" + ", ".join(QUICK_CELLS)
                        + "), to try the script out")
    parser.add_argument("--only", metavar="CELL[,CELL]",
                        help="run only these cells")
    parser.add_argument("--targets", metavar="T[,T]",
                        help="targets to measure, among " + ",".join(TARGETS)
                        + " (default: all; baseline only with --baseline)")
    parser.add_argument("--baseline", metavar="PATH",
                        help="another build's proxy binary, measured as the target `baseline` "
                        "turn about with target/release/proxy (e.g. main's, to show a change)")
    parser.add_argument("--no-syscalls", dest="syscalls", action="store_false",
                        help="skip the system calls per request (strace runs)")
    args = parser.parse_args(argv)

    if args.quick:
        args.duration, args.repeats = 1, 1
    if args.duration < 1 or args.repeats < 1:
        parser.error("--duration and --repeats must be at least 1")

    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in CELLS_BY_NAME]
        if unknown:
            parser.error(f"unknown cell {', '.join(unknown)}; cells are "
                         + ", ".join(c.name for c in CELLS))
        args.cells = [CELLS_BY_NAME[n] for n in names]
    elif args.quick:
        args.cells = [CELLS_BY_NAME[n] for n in QUICK_CELLS]
    else:
        args.cells = list(CELLS)

    default = [t for t in TARGETS if t != "baseline" or args.baseline]
    targets = [t.strip() for t in (args.targets or ",".join(default)).split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        parser.error(f"unknown target {', '.join(unknown)}; targets are " + ",".join(TARGETS))
    if "baseline" in targets and not args.baseline:
        parser.error("the target baseline needs --baseline PATH")
    if args.baseline and not os.access(args.baseline, os.X_OK):
        parser.error(f"--baseline {args.baseline}: not an executable file")
    args.targets = [t for t in TARGETS if t in targets]  # in table order
    return args


# --------------------------------------------------------------------------------------------
# Prerequisites: tools, file descriptors, CPU placement
# --------------------------------------------------------------------------------------------


class BenchError(Exception):
    """Something the bench cannot go on without; main prints it and exits with status 1."""


def log(message: str) -> None:
    """Progress and warnings: stderr, so that stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)


def find_tool(name: str) -> Optional[str]:
    """The tool's path; nginx and haproxy live in /usr/sbin, often not on a user's PATH."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


@dataclass
class Tools:
    wrk: str
    curl: Optional[str]
    nginx: Optional[str]
    haproxy: Optional[str]
    taskset: Optional[str]
    # Apache httpd's binary and the folder of its modules.
    apache: Optional[str] = None
    apache_modules: Optional[str] = None
    strace: Optional[str] = None
    # CPU for the proxies and backends, and CPU for wrk and curl; None: run unpinned.
    server_cpu: Optional[int] = None
    client_cpu: Optional[int] = None
    notes: List[str] = field(default_factory=list)


def check_prerequisites(args: argparse.Namespace) -> Tools:
    """Finds the tools; a missing wrk or Relevo binary is fatal, a missing nginx or HAProxy
    drops that target (and, for nginx, makes the backends Relevo's webserver)."""
    for binary in ("proxy", "webserver"):
        if not (RELEASE / binary).exists():
            raise BenchError(f"{RELEASE / binary} not found: run `cargo build --release --bins` "
                             "(`make bench` does it)")
    wrk = find_tool("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed; install it with:\n    " + INSTALL["wrk"])
    tools = Tools(wrk=wrk, curl=find_tool("curl"), nginx=find_tool("nginx"),
                  haproxy=find_tool("haproxy"), taskset=find_tool("taskset"),
                  apache=find_tool("apache2") or find_tool("httpd"),
                  apache_modules=apache_module_dir(), strace=find_tool("strace"))

    if tools.nginx is None:
        tools.notes.append("nginx is not installed: the backends are Relevo's webserver and the "
                           f"nginx target is skipped. Install it with: {INSTALL['nginx']}")
    elif not nginx_can_proxy(tools.nginx):
        tools.notes.append("this nginx lacks the proxy module: the nginx target is skipped. "
                           f"Install one that has it with: {INSTALL['nginx-proxy']}")
    if tools.haproxy is None:
        tools.notes.append("HAProxy is not installed: the haproxy target is skipped. "
                           f"Install it with: {INSTALL['haproxy']}")
    if tools.apache is None or tools.apache_modules is None:
        tools.apache = None
        tools.notes.append("Apache httpd (with mod_proxy) is not installed: the apache target "
                           f"is skipped. Install it with: {INSTALL['apache']}")
    if tools.strace is None and args.syscalls:
        tools.notes.append("strace is not installed: no system calls per request. Install it "
                           f"with: {INSTALL['strace']}")
    if tools.curl is None and any(c.kind == "curl" for c in args.cells):
        tools.notes.append(f"curl is not installed: 100m-1 is skipped. Install it with: "
                           f"{INSTALL['curl']}")

    allowed = sorted(os.sched_getaffinity(0))
    if tools.taskset is None:
        tools.notes.append("taskset is not installed: everything runs unpinned, so wrk competes "
                           f"with the proxy for CPU. Install it with: {INSTALL['taskset']}")
    elif len(allowed) < 2:
        tools.notes.append("only one CPU is available: everything runs unpinned on it, so wrk "
                           "competes with the proxy for CPU")
    else:
        tools.server_cpu, tools.client_cpu = allowed[0], allowed[1]
    for note in tools.notes:
        log("note: " + note)
    return tools


def apache_module_dir() -> Optional[str]:
    """The folder holding Apache's mod_proxy.so, among the distributions' usual places."""
    for folder in APACHE_MODULE_DIRS:
        if os.path.exists(os.path.join(folder, "mod_proxy.so")):
            return folder
    return None


def nginx_can_proxy(nginx: str) -> bool:
    """Whether `nginx -V` shows the proxy module (which also holds proxy_cache)."""
    out = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
    return "--without-http_proxy_module" not in out


def raise_fd_limit() -> int:
    """Raises the soft limit on open files to the hard one (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pinned(argv: List[str], tools: Tools, cpu: Optional[int]) -> List[str]:
    """argv run on `cpu` through taskset (which execs it: the PID is the program's own)."""
    if cpu is None:
        return argv
    return [tools.taskset, "-c", str(cpu)] + argv


def free_port() -> int:
    """A port nobody listens on right now: bind port 0, read it, release it. nginx and HAProxy
    cannot report the port the OS chose, so they get one this way."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Processes: start, wait for readiness, CPU time, stop
# --------------------------------------------------------------------------------------------


class Server:
    """A process the bench started (with the children it forks, like nginx workers).

    Its stdout and stderr are read by a thread, which keeps the last lines for error
    messages and signals readiness when `ready_text` appears. The process runs in a session
    of its own, so Ctrl-C reaches only this script, which then stops it cleanly.
    """

    def __init__(self, name: str, argv: List[str], ready_text: str):
        self.name = name
        self.ready_text = ready_text
        self.ready_line: Optional[str] = None
        self.port: Optional[int] = None
        self.tail: collections.deque = collections.deque(maxlen=30)
        self._event = threading.Event()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, errors="replace",
                                         start_new_session=True)
        except OSError as e:
            raise BenchError(f"cannot start {name} ({argv[0]}): {e}") from e
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.tail.append(line.rstrip())
            if self.ready_line is None and self.ready_text in line:
                self.ready_line = line.strip()
                self._event.set()
        self._event.set()  # end of output: the process has exited

    def wait_ready(self) -> None:
        """Returns once the readiness line was printed; raises if the process exits first."""
        if not self._event.wait(START_TIMEOUT_SECS):
            raise BenchError(f"{self.name} printed no `{self.ready_text}` within "
                             f"{START_TIMEOUT_SECS} s; its last output:\n" + self.output())
        if self.ready_line is None:
            raise BenchError(f"{self.name} exited with status {self.proc.wait()} before it was "
                             "ready; its last output:\n" + self.output())

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} has died (status {self.proc.returncode}); its last "
                             "output:\n" + self.output())

    def output(self) -> str:
        return "\n".join("    " + line for line in self.tail) or "    (nothing)"

    def pids(self) -> List[int]:
        """The process and all its descendants."""
        children: Dict[int, List[int]] = collections.defaultdict(list)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = read_stat(int(entry))
                if stat is not None:
                    children[int(stat[1])].append(int(entry))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its descendants so far."""
        ticks = 0
        for pid in self.pids():
            stat = read_stat(pid)
            if stat is not None:
                ticks += int(stat[11]) + int(stat[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL if it is still there after a while."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.proc.wait()


def read_stat(pid: int) -> Optional[List[str]]:
    """/proc/PID/stat from field 3 (state) on: [state, ppid, ..., utime at 11, stime at 12].
    The command name (field 2) may hold spaces, so the split starts after its `)`."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def read_status(pid: int) -> Dict[str, str]:
    """/proc/PID/status as a dict: VmRSS, Threads, ..."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


class Lab:
    """Everything the bench runs: the temporary directory, the servers, their addresses."""

    def __init__(self, tools: Tools, nofile: int):
        self.tools = tools
        self.nofile = nofile
        self.tmp = Path(tempfile.mkdtemp(prefix="relevo-bench-"))
        # Workers of nginx started as root run as `nobody`: they must be able to read here.
        self.tmp.chmod(0o755)
        self.servers: List[Server] = []
        self.backends: List[Server] = []
        # target -> the server wrk talks to and whose CPU time counts, for the plain cells
        # and for cache-64; the cache cell's port (nginx has a second server block for it).
        self.plain: Dict[str, Server] = {}
        self.cached: Dict[str, Server] = {}
        self.cache_ports: Dict[str, int] = {}

    def start(self, name: str, argv: List[str], ready_text: str) -> Server:
        server = Server(name, pinned(argv, self.tools, self.tools.server_cpu), ready_text)
        self.servers.append(server)
        server.wait_ready()
        return server

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Setting up: files, backends, proxies
# --------------------------------------------------------------------------------------------


def write_site(root: Path) -> None:
    """The three files every backend serves. The page is exactly 1 KiB of HTML."""
    root.mkdir(parents=True)
    head = b"<!doctype html>\n<html><head><title>Relevo bench</title></head><body>\n<p>"
    tail = b"</p>\n</body></html>\n"
    page = head + b"x" * (KIB - len(head) - len(tail)) + tail
    (root / PAGE_1K).write_bytes(page)
    chunk = os.urandom(MIB)
    (root / FILE_1M).write_bytes(chunk)
    with open(root / FILE_100M, "wb") as f:
        for _ in range(100):
            f.write(chunk)
    for path in root.iterdir():
        path.chmod(0o644)
    root.chmod(0o755)


def nginx_main(lab: Lab, name: str) -> str:
    """The part of an nginx.conf common to backends and proxy: one worker, in the
    foreground, logging notices to stderr (where the script waits for `start worker
    processes`), every temporary path inside the bench's directory."""
    d = lab.tmp / name
    d.mkdir()
    connections = max(1024, min(20000, lab.nofile // 2))
    return f"""
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {lab.nofile};
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
"""


def start_nginx(lab: Lab, name: str, conf: str) -> Server:
    path = lab.tmp / f"{name}.conf"
    path.write_text(conf)
    return lab.start(name, [lab.tools.nginx, "-e", "stderr", "-p", str(lab.tmp / name),
                            "-c", str(path)], "start worker processes")


def start_backends(lab: Lab, root: Path) -> None:
    """Three backends: nginx static servers when nginx is installed, else Relevo's webserver."""
    for i in (1, 2, 3):
        name = f"backend-{i}"
        if lab.tools.nginx:
            port = free_port()
            server = start_nginx(lab, name, nginx_main(lab, name) + f"""
    sendfile on;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
            server.port = port
        else:
            server = lab.start(name, [str(RELEASE / "webserver"), "--listen", "127.0.0.1:0",
                                      "--root", str(root), "--name", f"s{i}"], "listening on")
            server.port = port_of(server)
        lab.backends.append(server)
        log(f"  {name} on 127.0.0.1:{server.port}")


def port_of(server: Server) -> int:
    """The port in a Relevo binary's `listening on IP:PORT` line."""
    match = re.search(r"listening on \S+:(\d+)", server.ready_line or "")
    if not match:
        raise BenchError(f"cannot read the port in {server.name}'s line {server.ready_line!r}")
    return int(match.group(1))


def start_relevo(lab: Lab, name: str, cache: bool = False, max_connections: int = 20000,
                 client_timeout: int = 60, binary: Optional[str] = None) -> Server:
    """Relevo (this checkout's build, or `binary`) on a port the OS picks, logging warnings
    only to a file in the temp dir."""
    lines = ["listen = 127.0.0.1:0"]
    lines += [f"backend = 127.0.0.1:{b.port}" for b in lab.backends]
    lines += [
        f"log_file = {lab.tmp / name}.log",
        "log_level = warn",
        "access_log = off",  # nginx runs with access_log off too
        f"client_timeout = {client_timeout}",
        f"max_connections = {max_connections}",
        f"cache = {'on' if cache else 'off'}",
        f"cache_dir = {lab.tmp / name}-cache",
        # Fresh for cache_ttl (60 s), as nginx's proxy_cache_valid and Apache's
        # CacheMinExpire: the heuristic from Last-Modified (a tenth of the page's age, a
        # fraction of a second for the page just written) would revalidate on nearly every hit.
        "cache_heuristic_max = 0",
    ]
    conf = lab.tmp / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    server = lab.start(name, [binary or str(RELEASE / "proxy"), str(conf)], "listening on")
    server.port = port_of(server)
    return server


def start_nginx_proxy(lab: Lab) -> Server:
    """nginx as reverse proxy: one server block plain, one with proxy_cache."""
    port, cache_port = free_port(), free_port()
    upstream = "\n".join(f"        server 127.0.0.1:{b.port};" for b in lab.backends)
    proxied = """
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""
    server = start_nginx(lab, "nginx", nginx_main(lab, "nginx") + f"""
    upstream backends {{
{upstream}
        keepalive 64;
    }}
    proxy_cache_path {lab.tmp}/nginx/cache levels=1:2 keys_zone=bench:10m max_size=1g
                     inactive=60m use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{{proxied}
        }}
    }}
    server {{
        listen 127.0.0.1:{cache_port};
        location / {{{proxied}
            proxy_cache bench;
            proxy_cache_valid 200 60s;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
""")
    server.port = port
    lab.cache_ports["nginx"] = cache_port
    return server


def start_haproxy(lab: Lab) -> Server:
    """HAProxy, one thread, reusing backend connections, round robin over the three."""
    port = free_port()
    maxconn = max(1000, min(10000, lab.nofile // 2 - 100))
    servers = "\n".join(f"    server s{i} 127.0.0.1:{b.port}"
                        for i, b in enumerate(lab.backends, 1))
    conf = lab.tmp / "haproxy.cfg"
    conf.write_text(f"""global
    nbthread 1
    maxconn {maxconn}

defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    http-reuse always

frontend bench
    bind 127.0.0.1:{port}
    default_backend backends

backend backends
    balance roundrobin
{servers}
""")
    # -W: master-worker, -db: stay in the foreground; the master prints "Loading success."
    server = lab.start("haproxy", [lab.tools.haproxy, "-W", "-db", "-f", str(conf)],
                       "Loading success.")
    server.port = port
    return server


def start_apache(lab: Lab) -> Server:
    """Apache httpd, worker MPM, balancing over the three backends with mod_proxy_balancer
    (by requests, so round robin; backend connections are pooled per process by default),
    one virtual host plain and one with mod_cache_disk. Its own configuration only: no
    system service, nothing outside the temporary directory."""
    port, cache_port = free_port(), free_port()
    d = lab.tmp / "apache"
    for folder in ("cache", "cache-lock"):
        (d / folder).mkdir(parents=True)
        # Started as root, httpd's children run as nobody: they must write there.
        (d / folder).chmod(0o777)
    mods = lab.tools.apache_modules
    modules = "\n".join(f"LoadModule {m}_module {mods}/mod_{m}.so" for m in (
        "mpm_worker", "authz_core", "slotmem_shm", "proxy", "proxy_http", "proxy_balancer",
        "lbmethod_byrequests", "cache", "cache_disk"))
    members = "\n".join(f"    BalancerMember http://127.0.0.1:{b.port}" for b in lab.backends)
    user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
    servers = -(-APACHE_MAX_WORKERS // APACHE_THREADS_PER_CHILD)
    # Threads for the largest cell from the start: the worker MPM otherwise adds children
    # gradually, and the first runs would measure its ramp-up.
    servers_at_start = -(-APACHE_START_WORKERS // APACHE_THREADS_PER_CHILD)
    conf = d / "httpd.conf"
    conf.write_text(f"""ServerRoot {d}
ServerName bench
Listen 127.0.0.1:{port}
Listen 127.0.0.1:{cache_port}
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}
ErrorLog /dev/stderr
LogLevel notice
{user}{modules}
StartServers {servers_at_start}
ServerLimit {servers}
ThreadLimit {APACHE_THREADS_PER_CHILD}
ThreadsPerChild {APACHE_THREADS_PER_CHILD}
MaxRequestWorkers {APACHE_MAX_WORKERS}
MinSpareThreads {APACHE_THREADS_PER_CHILD}
MaxSpareThreads {APACHE_MAX_WORKERS}
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120
EnableSendfile On
<Proxy "balancer://backends">
{members}
    ProxySet lbmethod=byrequests
</Proxy>
<VirtualHost 127.0.0.1:{port}>
    ProxyPass "/" "balancer://backends/"
</VirtualHost>
<VirtualHost 127.0.0.1:{cache_port}>
    ProxyPass "/" "balancer://backends/"
    CacheRoot {d}/cache
    CacheEnable disk /
    CacheQuickHandler on
    CacheHeader on
    CacheDefaultExpire 60
    # Fresh for 60 s as Relevo's cache_ttl and nginx's proxy_cache_valid: the heuristic from
    # Last-Modified (a tenth of a file's age) would revalidate the freshly written page.
    CacheMinExpire 60
    CacheIgnoreNoLastMod On
    # One request refreshes an entry while the others go to the backend: without the lock,
    # concurrent misses rewrite the header and data files over each other, and a header that
    # does not match its data file is a miss again, so under load the entry never settles.
    CacheLock on
    CacheLockPath {d}/cache-lock
</VirtualHost>
""")
    # -DFOREGROUND: the parent stays, and SIGTERM to it stops every child.
    server = lab.start("apache", [lab.tools.apache, "-f", str(conf), "-DFOREGROUND"],
                       "resuming normal operations")
    server.port = port
    lab.cache_ports["apache"] = cache_port
    return server


def start_targets(lab: Lab, args: argparse.Namespace, notes: List[str]) -> List[str]:
    """Starts the proxies the chosen cells need; returns the targets that can be measured."""
    wrk_cells = [c for c in args.cells if c.kind != "idle"]
    if not wrk_cells:
        return []
    targets = []
    for target in args.targets:
        if target in ("relevo", "baseline"):
            binary = args.baseline if target == "baseline" else None
            lab.plain[target] = start_relevo(lab, target, binary=binary)
            if any(c.cache for c in wrk_cells):
                lab.cached[target] = start_relevo(lab, f"{target}-cache", cache=True,
                                                  binary=binary)
                lab.cache_ports[target] = lab.cached[target].port
        elif target == "nginx":
            if not lab.tools.nginx or not nginx_can_proxy(lab.tools.nginx):
                continue
            lab.plain["nginx"] = lab.cached["nginx"] = start_nginx_proxy(lab)
        elif target == "haproxy":
            if not lab.tools.haproxy:
                continue
            lab.plain["haproxy"] = start_haproxy(lab)
        elif target == "apache":
            if not lab.tools.apache:
                continue
            lab.plain["apache"] = lab.cached["apache"] = start_apache(lab)
        elif target == "direct":
            lab.plain["direct"] = lab.cached["direct"] = lab.backends[0]
            lab.cache_ports["direct"] = lab.backends[0].port
        if target in lab.plain:
            log(f"  {target} on 127.0.0.1:{lab.plain[target].port}")
        targets.append(target)

    if any(c.cache for c in wrk_cells):
        for target in ("relevo", "baseline", "nginx", "apache"):
            if target in lab.cached and not cache_hits(lab.cache_ports[target]):
                del lab.cached[target]
                name = TARGET_TITLES[target]
                notes.append(f"{name} gave no `X-Cache: HIT` on a second request for the same "
                             f"page: cache-64 is skipped for {name}.")
                log("note: " + notes[-1])
    return targets


def cache_hits(port: int) -> bool:
    """Asks twice for the 1 KiB page; true if the second answer says `X-Cache: HIT`."""
    for _ in range(2):
        status, headers, _ = http_get(port, "/" + PAGE_1K, host=f"127.0.0.1:{port}")
    return status == 200 and headers.get("x-cache", "").upper().startswith("HIT")


def http_get(port: int, path: str, sock: Optional[socket.socket] = None, host: str = "bench"):
    """One GET over a new connection (or over `sock`, left open): (status, headers, body)."""
    own = sock is None
    if own:
        sock = socket.create_connection(("127.0.0.1", port), timeout=IDLE_SOCKET_TIMEOUT_SECS)
    try:
        close = "Connection: close\r\n" if own else ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{close}\r\n".encode())
        return read_response(sock)
    finally:
        if own:
            sock.close()


def read_response(sock: socket.socket):
    """Reads one response with a Content-Length body: (status, lower-cased headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError(f"connection closed before a whole response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed in the middle of a response body")
        body += chunk
    return status, headers, body


# --------------------------------------------------------------------------------------------
# Measuring: wrk and curl runs, CPU time
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One run of one cell against one target."""

    throughput: float  # requests/s, or MiB/s
    p99: Optional[float]  # seconds; None for curl
    cpu_per_request: float  # seconds of the target's CPU per request
    problem: str = ""  # socket errors, bad statuses


UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(out: str) -> dict:
    """Requests per second, total requests, p99 and errors from wrk's --latency output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    if not (rps and total and p99):
        raise BenchError("cannot read wrk's output:\n" + out)
    problems = []
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and any(int(n) for n in errors.groups()):
        problems.append("socket errors: connect {}, read {}, write {}, timeout {}"
                        .format(*errors.groups()))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        problems.append(f"{bad.group(1)} non-2xx/3xx responses")
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p99": float(p99.group(1)) * UNITS[p99.group(2)],
        "problem": "; ".join(problems),
    }


def run_client(lab: Lab, argv: List[str]) -> subprocess.CompletedProcess:
    """Runs wrk or curl on the client CPU and waits for it; if the bench is interrupted
    meanwhile, the client is stopped too rather than left running on its own."""
    proc = subprocess.Popen(pinned(argv, lab.tools, lab.tools.client_cpu),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_wrk(lab: Lab, cell: Cell, port: int, server: Server, duration: int) -> Sample:
    argv = [lab.tools.wrk, "-t1", f"-c{cell.connections}", f"-d{duration}s",
            f"--timeout={WRK_TIMEOUT}", "--latency"]
    if cell.close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}{cell.path}")
    before = server.cpu_seconds()
    done = run_client(lab, argv)
    cpu = server.cpu_seconds() - before
    if done.returncode != 0:
        raise BenchError(f"wrk failed (status {done.returncode}):\n{done.stdout}{done.stderr}")
    result = parse_wrk(done.stdout)
    throughput = result["rps"] * (cell.mib_per_response or 1.0)
    return Sample(throughput, result["p99"], cpu / max(result["requests"], 1), result["problem"])


def run_curl(lab: Lab, cell: Cell, port: int, server: Server) -> Sample:
    argv = [lab.tools.curl, "-s", "-o", "/dev/null", "-w",
            "%{http_code} %{size_download} %{speed_download}",
            f"http://127.0.0.1:{port}{cell.path}"]
    before = server.cpu_seconds()
    done = run_client(lab, argv)
    cpu = server.cpu_seconds() - before
    try:
        status, size, speed = done.stdout.split()
    except ValueError:
        raise BenchError(f"curl failed (status {done.returncode}): {done.stdout}{done.stderr}")
    expected = int(cell.mib_per_response * MIB)
    problem = ""
    if status != "200" or int(size) != expected:
        problem = f"status {status}, {size} bytes instead of {expected}"
    return Sample(float(speed) / MIB, None, cpu, problem)


def warm_cache(port: int) -> None:
    """One request with the Host wrk sends (a cache key may hold it, Apache's does), so that
    the runs that follow are all hits."""
    http_get(port, "/" + PAGE_1K, host=f"127.0.0.1:{port}")


def measure(lab: Lab, args: argparse.Namespace, targets: List[str],
            notes: List[str]) -> Dict[str, Dict[str, List[Sample]]]:
    """Every cell, every repeat, every target, in that nesting: the targets take turns, so a
    burst of noise on the machine hurts them alike rather than one of them."""
    samples: Dict[str, Dict[str, List[Sample]]] = {}
    for cell in args.cells:
        if cell.kind == "idle":
            continue
        if cell.kind == "curl" and not lab.tools.curl:
            continue
        samples[cell.name] = {}
        for repeat in range(1, args.repeats + 1):
            for target in targets:
                where = lab.cached if cell.cache else lab.plain
                if target not in where:
                    continue
                server = where[target]
                port = lab.cache_ports[target] if cell.cache else server.port
                server.check_alive()
                for backend in lab.backends:
                    backend.check_alive()
                if cell.cache:
                    warm_cache(port)
                if cell.kind == "curl":
                    sample = run_curl(lab, cell, port, server)
                else:
                    sample = run_wrk(lab, cell, port, server, args.duration)
                samples[cell.name].setdefault(target, []).append(sample)
                log(f"{cell.name:<11} {target:<8} run {repeat}/{args.repeats}: "
                    f"{format_throughput(sample.throughput, cell)} {cell.unit}, "
                    f"p99 {format_seconds(sample.p99)}, "
                    f"CPU {format_seconds(sample.cpu_per_request)}/req"
                    + (f"  [{sample.problem}]" if sample.problem else ""))
                if sample.problem:
                    notes.append(f"{cell.name}, {TARGET_TITLES[target]}, run {repeat}: "
                                 f"{sample.problem}")
    return samples


# --------------------------------------------------------------------------------------------
# System calls per request: strace -c -f on a short run
# --------------------------------------------------------------------------------------------


STRACE_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def parse_strace_summary(text: str) -> Dict[str, int]:
    """The calls per system call in the table `strace -c` writes (its total line left out)."""
    counts = {}
    for line in text.splitlines():
        match = STRACE_LINE.match(line)
        if match and match.group(2) != "total":
            counts[match.group(2)] = int(match.group(1))
    return counts


def count_syscalls(lab: Lab, cell: Cell, server: Server, port: int) -> Dict[str, float]:
    """Runs `cell` briefly against `server` with strace attached to all its threads, and
    returns the calls per request of each system call."""
    out = lab.tmp / f"strace-{server.name}-{cell.name}.txt"
    # With -f, `-p PID` attaches to every thread of the process, and to those it starts.
    argv = [lab.tools.strace, "-c", "-f", "-o", str(out), "-p", str(server.proc.pid)]
    strace = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # strace says `Process N attached with M threads` once it holds them all.
        while "attached" not in (line := strace.stderr.readline()):
            if not line:
                raise BenchError(f"strace ended before attaching to {server.name}")
        if cell.cache:
            warm_cache(port)
        if cell.kind == "curl":
            requests = 1 if run_curl(lab, cell, port, server).problem == "" else 0
        else:
            argv = [lab.tools.wrk, "-t1", f"-c{cell.connections}", f"-d{SYSCALL_RUN_SECS}s",
                    f"--timeout={WRK_TIMEOUT}", "--latency"]
            if cell.close:
                argv += ["-H", "Connection: close"]
            argv.append(f"http://127.0.0.1:{port}{cell.path}")
            requests = parse_wrk(run_client(lab, argv).stdout)["requests"]
    finally:
        strace.send_signal(signal.SIGINT)
        strace.communicate()
    if requests == 0:
        raise BenchError(f"{cell.name}: no request completed under strace")
    counts = parse_strace_summary(out.read_text())
    return {name: n / requests for name, n in counts.items()}


def measure_syscalls(lab: Lab, args: argparse.Namespace,
                     notes: List[str]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """System calls per request of Relevo (and of the baseline build) in each cell."""
    found: Dict[str, Dict[str, Dict[str, float]]] = {}
    if not (args.syscalls and lab.tools.strace):
        return found
    for cell in args.cells:
        if cell.kind == "idle" or (cell.kind == "curl" and not lab.tools.curl):
            continue
        for target in ("baseline", "relevo"):
            where = lab.cached if cell.cache else lab.plain
            if target not in where:
                continue
            server = where[target]
            port = lab.cache_ports[target] if cell.cache else server.port
            try:
                counts = count_syscalls(lab, cell, server, port)
            except BenchError as e:
                notes.append(f"system calls, {cell.name}, {TARGET_TITLES[target]}: {e}")
                continue
            found.setdefault(cell.name, {})[target] = counts
            log(f"{cell.name:<11} {target:<8} {syscall_text(counts)} system calls/request")
    return found


# --------------------------------------------------------------------------------------------
# idle10k: 10,000 idle keep-alive connections and Relevo's memory
# --------------------------------------------------------------------------------------------


@dataclass
class IdleResult:
    connections: int
    seconds_to_open: float
    rss_before_mib: float
    rss_mib: float
    threads: int
    max_connections: int
    still_served: bool  # whether held connections still answer at the end

    @property
    def passed(self) -> bool:
        return self.rss_mib < IDLE_RSS_GOAL_MIB and self.still_served


def idle_scale(nofile: int) -> tuple:
    """(max_connections, connections to hold) for idle10k: IDLE_CONNECTIONS below Relevo's
    pressure mark when the open-file limit allows, else as many as it allows."""
    slots = min(IDLE_MAX_CONNECTIONS, (nofile - RELEVO_FD_RESERVE) // 2)
    return slots, min(IDLE_CONNECTIONS, slots * RELEVO_PRESSURE_PERCENT // 100 - 1)


def run_idle(lab: Lab, nofile: int) -> IdleResult:
    """Opens keep-alive connections to Relevo (IDLE_CONNECTIONS, or fewer: `idle_scale`),
    each with one answered GET, keeps them idle, and reads VmRSS; then checks that held
    connections are still served."""
    max_connections, wanted = idle_scale(nofile)
    relevo = start_relevo(lab, "relevo-idle", max_connections=max_connections,
                          client_timeout=IDLE_CLIENT_TIMEOUT_SECS)
    pid = relevo.proc.pid
    rss_before = vm_rss_mib(pid)
    held: List[socket.socket] = []
    started = time.monotonic()
    try:
        while len(held) < wanted:
            batch = []
            for _ in range(min(IDLE_BATCH, wanted - len(held))):
                sock = socket.create_connection(("127.0.0.1", relevo.port),
                                                timeout=IDLE_SOCKET_TIMEOUT_SECS)
                batch.append(sock)
                held.append(sock)
                sock.sendall(b"GET /" + PAGE_1K.encode() + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
            for sock in batch:
                status, _, _ = read_response(sock)
                if status != 200:
                    raise BenchError(f"idle10k: connection {len(held)} got {status}, not 200")
            if len(held) % 2000 == 0:
                log(f"idle10k     relevo   {len(held):,} connections open and idle")
        seconds = time.monotonic() - started
        status = read_status(pid)
        rss = int(status["VmRSS"].split()[0]) / KIB
        threads = int(status["Threads"])
        still_served = all(http_get(relevo.port, "/" + PAGE_1K, sock=held[i])[0] == 200
                           for i in (0, len(held) // 2, len(held) - 1))
    finally:
        for sock in held:
            sock.close()
    relevo.check_alive()
    return IdleResult(len(held), seconds, rss_before, rss, threads, max_connections,
                      still_served)


def vm_rss_mib(pid: int) -> float:
    return int(read_status(pid)["VmRSS"].split()[0]) / KIB


# --------------------------------------------------------------------------------------------
# Report: markdown tables
# --------------------------------------------------------------------------------------------


def format_throughput(value: Optional[float], cell: Cell) -> str:
    return "–" if value is None else f"{value:,.0f}"


def format_seconds(value: Optional[float]) -> str:
    """Three significant digits or so, in µs, ms or s."""
    if value is None:
        return "–"
    for scale, unit in ((1e-6, "µs"), (1e-3, "ms"), (1.0, "s")):
        v = value / scale
        if v < 1000 or unit == "s":
            break
    decimals = 2 if v < 10 else 1 if v < 100 else 0
    return f"{v:.{decimals}f} {unit}"


def format_ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


@dataclass
class Median:
    throughput: float
    p99: Optional[float]
    cpu: float
    flagged: bool  # some run had errors


def medians(samples: Dict[str, Dict[str, List[Sample]]]) -> Dict[str, Dict[str, Median]]:
    out: Dict[str, Dict[str, Median]] = {}
    for cell, by_target in samples.items():
        out[cell] = {}
        for target, runs in by_target.items():
            p99s = [s.p99 for s in runs if s.p99 is not None]
            out[cell][target] = Median(
                statistics.median(s.throughput for s in runs),
                statistics.median(p99s) if p99s else None,
                statistics.median(s.cpu_per_request for s in runs),
                any(s.problem for s in runs),
            )
    return out


def goal_text(cell: Cell, row: Dict[str, Median]) -> str:
    """The issue's throughput goals for the cell, each with ✓ or ✗ and the ratio reached."""
    parts = []
    relevo = row.get("relevo")
    for target, floor in cell.goals:
        ref = row.get(target)
        label = f"≥{floor:g}× {TARGET_TITLES[target]}"
        if not relevo or not ref:
            parts.append(f"{label} –")
            continue
        ratio = relevo.throughput / ref.throughput
        parts.append(f"{label} {'✓' if ratio >= floor else '✗'}")
    return ", ".join(parts)


def table(header: List[str], rows: List[List[str]], left: int = 1) -> str:
    """A markdown table; the first `left` columns and a last `goal` column align left, the
    numbers right."""
    aligns = ["---" if i < left or name == "goal" else "---:" for i, name in enumerate(header)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_lines(tools: Tools, args: argparse.Namespace, targets: List[str]) -> List[str]:
    cpu_model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    if tools.server_cpu is not None:
        placement = (f"proxies and backends on CPU {tools.server_cpu}, wrk and curl on CPU "
                     f"{tools.client_cpu} (taskset)")
    else:
        placement = "unpinned (see the notes)"
    backends = ("3 × nginx static, 1 worker each" if tools.nginx
                else "3 × Relevo's webserver (nginx is not installed)")
    nginx = tool_version([tools.nginx, "-v"], r"nginx/(\S+)") if tools.nginx else "–"
    haproxy = tool_version([tools.haproxy, "-v"], r"version (\S+)") if tools.haproxy else "–"
    apache = tool_version([tools.apache, "-v"], r"Apache/(\S+)") if tools.apache else "–"
    wrk = tool_version([tools.wrk, "-v"], r"wrk (\S+)")
    return [
        f"| machine | {cpu_model}, {os.cpu_count()} CPUs, Linux {os.uname().release} |",
        f"| placement | {placement} |",
        f"| backends | {backends} |",
        f"| Relevo | {relevo_version()} |",
        f"| baseline | {args.baseline or '–'} |",
        f"| nginx | {nginx} |",
        f"| HAProxy | {haproxy} |",
        f"| Apache httpd | {apache} (worker MPM) |",
        f"| wrk | {wrk} |",
        f"| runs | {args.duration} s per wrk run, median of {args.repeats} |",
        f"| targets | {', '.join(TARGET_TITLES[t] for t in targets) or '–'} |",
    ]


def tool_version(argv: List[str], pattern: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def relevo_version() -> str:
    """The commit the binaries were built from (assumed: the checkout's HEAD)."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"`{commit}`" + (" + uncommitted changes" if dirty else "")


def syscall_text(counts: Optional[Dict[str, float]]) -> str:
    """`8.0 (recvfrom 4.0, sendto 2.0, ioctl 2.0)`: the total per request and the top three."""
    if not counts:
        return "–"
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return f"{total:.1f} (" + ", ".join(f"{name} {n:.1f}" for name, n in top) + ")"


def report(tools: Tools, args: argparse.Namespace, targets: List[str],
           samples: Dict[str, Dict[str, List[Sample]]], idle: Optional[IdleResult],
           syscalls: Dict[str, Dict[str, Dict[str, float]]], notes: List[str],
           started: datetime.datetime, load: tuple) -> str:
    med = medians(samples)
    cells = [c for c in args.cells if c.name in med]
    titles = [TARGET_TITLES[t] for t in targets]
    out = [f"# Relevo benchmark, {started:%Y-%m-%d %H:%M}", "", "| | |", "|---|---|"]
    out += machine_lines(tools, args, targets)
    out.append(f"| load average | {load[0]:.2f} at the start, {load[1]:.2f} at the end "
               "(1 minute; the proxies' CPU is shared with whatever else runs) |")

    def value(cell: Cell, target: str, what: str) -> str:
        m = med[cell.name].get(target)
        if m is None:
            return "–"
        text = (format_throughput(m.throughput, cell) if what == "throughput"
                else format_seconds(m.p99 if what == "p99" else m.cpu))
        return text + (" *" if m.flagged else "")

    def ratio(cell: Cell, target: str, what: str) -> str:
        a, b = med[cell.name].get("relevo"), med[cell.name].get(target)
        if not a or not b:
            return "–"
        return format_ratio(getattr(a, what), getattr(b, what))

    if cells:
        out += ["", "## Throughput", "",
                "Requests per second (MiB/s for 1m-16 and 100m-1); higher is better.", ""]
        # Ratio columns only for the references measured, and only when Relevo was.
        refs = [t for t in REFERENCES if t in targets and "relevo" in targets]
        rows = [[f"{c.name} ({c.unit})"] + [value(c, t, "throughput") for t in targets]
                + [ratio(c, t, "throughput") for t in refs] + [goal_text(c, med[c.name])]
                for c in cells]
        out.append(table(["cell"] + titles + [f"Relevo/{TARGET_TITLES[t]}" for t in refs]
                         + ["goal"], rows))

        out += ["", "## p99 latency", "", "From wrk --latency; lower is better.", ""]
        rows = [[c.name] + [value(c, t, "p99") for t in targets] for c in cells
                if c.kind == "wrk"]
        out.append(table(["cell"] + titles, rows))

        out += ["", "## CPU time per request", "",
                "User + system time of the target's processes (all nginx and HAProxy "
                "processes; for direct, the backend's own) per request; lower is better.", ""]
        rows = [[c.name] + [value(c, t, "cpu") for t in targets]
                + [ratio(c, t, "cpu") for t in refs] for c in cells]
        out.append(table(["cell"] + titles + [f"Relevo/{TARGET_TITLES[t]}" for t in refs],
                         rows))

    if syscalls:
        out += ["", "## System calls per request", "",
                f"Relevo's, counted by `strace -c -f` attached to every thread during one "
                f"{SYSCALL_RUN_SECS} s run per cell (not timed: strace slows it down), divided "
                "by the requests completed; the most frequent calls in parentheses.", ""]
        measured = [t for t in ("baseline", "relevo") if any(t in v for v in syscalls.values())]
        rows = [[name] + [syscall_text(syscalls[name].get(t)) for t in measured]
                for name in syscalls]
        out.append(table(["cell"] + [TARGET_TITLES[t] for t in measured], rows))

    if idle is not None:
        out += ["", f"## {idle.connections:,} idle keep-alive connections", "",
                f"Relevo with `max_connections = {idle.max_connections:,}` (the connections "
                f"stay below {RELEVO_PRESSURE_PERCENT} % of it, where idle waits would shrink), "
                "each connection having had one GET answered, then idle.", ""]
        if idle.connections < IDLE_CONNECTIONS:
            out += [f"Fewer than {IDLE_CONNECTIONS:,}: the open-file limit holds no more "
                    f"(`ulimit -Hn` {IDLE_MAX_CONNECTIONS * 2 + RELEVO_FD_RESERVE:,} or more "
                    f"measures {IDLE_CONNECTIONS:,}).", ""]
        per_connection = (idle.rss_mib - idle.rss_before_mib) * KIB / max(idle.connections, 1)
        out.append(table(["", "Relevo"], [
            ["connections held", f"{idle.connections:,} (opened in {idle.seconds_to_open:.1f} s)"],
            ["threads", f"{idle.threads:,}"],
            ["resident memory (VmRSS)", f"{idle.rss_mib:.1f} MiB (at start "
                                        f"{idle.rss_before_mib:.1f} MiB)"],
            ["per connection", f"{per_connection:.1f} KiB"],
            [f"goal < {IDLE_RSS_GOAL_MIB} MiB",
             "✓" if idle.rss_mib < IDLE_RSS_GOAL_MIB else "✗"],
            ["held connections still served", "✓" if idle.still_served else "✗"],
        ], left=2))

    out += ["", "Cells: ka1k-N = 1 KiB page over N keep-alive connections; close1k-N = the same "
            "with `Connection: close`; cache-64 = 1 KiB cache hits (Relevo's cache, nginx "
            "proxy_cache); 1m-16 = 1 MiB file over 16 connections; 100m-1 = one 100 MiB "
            "download with curl. direct = wrk straight at one backend, the ceiling. "
            "baseline = the Relevo build given with --baseline. "
            "`*` = some run had errors (see the notes)."]
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def write_results(text: str, started: datetime.datetime) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started:%Y%m%d-%H%M%S}.md"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def on_signal(signum, frame):
    """SIGTERM and SIGHUP stop the bench the way Ctrl-C does: through the `finally` that
    stops every process it started."""
    raise KeyboardInterrupt


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    # Ctrl-C raises KeyboardInterrupt even when the shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = datetime.datetime.now()
    lab = None
    try:
        tools = check_prerequisites(args)
        notes = list(tools.notes)
        nofile = raise_fd_limit()
        lab = Lab(tools, nofile)
        log(f"starting servers (temporary files in {lab.tmp})")
        root = lab.tmp / "www"
        write_site(root)
        start_backends(lab, root)
        targets = start_targets(lab, args, notes)

        load_start = os.getloadavg()[0]
        samples = measure(lab, args, targets, notes)
        syscalls = measure_syscalls(lab, args, notes)

        idle = None
        if any(c.kind == "idle" for c in args.cells):
            if "relevo" in args.targets:
                log(f"idle10k     relevo   opening {idle_scale(nofile)[1]:,} connections")
                idle = run_idle(lab, nofile)
            else:
                notes.append("idle10k measures Relevo only: skipped (relevo not in --targets)")

        load = (load_start, os.getloadavg()[0])
        text = report(tools, args, targets, samples, idle, syscalls, notes, started, load)
        path = write_results(text, started)
        print(text)
        log(f"written to {path.relative_to(REPO)}")
        return 0
    except BenchError as e:
        log(f"bench: {e}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        if lab is not None:
            lab.close()
            log("bench: every process it started is stopped, temporary files removed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
