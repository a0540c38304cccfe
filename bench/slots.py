#!/usr/bin/env python3
"""Slot exhaustion (issue 12, item 1): two attacks on the proxy's connection slots, each with
a probe client on the side, against Relevo and nginx.

  keepalive   CONNECTIONS keep-alive connections (default 1,024) are opened, each makes one
              request, and then each sends one more request every INTERVAL seconds (default
              10: about 100 requests/s in all). A connection the proxy closes is reopened at
              its next request, as a browser would.
  slowloris   CONNECTIONS connections (default 1,100) each send a request line and a Host
              field, then one more header line every DRIP seconds (default 1), never ending
              the head. A connection the proxy closes (408, 503, reclaimed) is reopened at
              its next tick.

Once every attack connection is open, a probe opens a new connection every PROBE_EVERY
seconds (default 1) for DURATION seconds (default 40) and asks for the page with
`Connection: close`. The report counts the probes answered 200, 503, something else, closed
without an answer, refused at connect, and unanswered within PROBE_TIMEOUT (5 s); and what the
attack connections got.

The backend is one nginx serving a small page (Relevo's webserver when nginx is missing).
The targets are Relevo (target/release/proxy, or --proxy PATH to compare another build) and
nginx as a reverse proxy (one worker, worker_connections from bench/run.py). Everything
listens on 127.0.0.1 and stops by itself: processes started here are stopped at the end, also
on Ctrl-C, and the temporary directory is removed. Python 3 standard library only; the
helpers that start servers are bench/run.py's.

    bench/slots.py                                # both attacks, Relevo and nginx
    bench/slots.py --attack keepalive --targets relevo --max-connections 1024
    bench/slots.py --proxy /tmp/old/proxy         # the same against an older build
"""

import argparse
import errno
import heapq
import itertools
import selectors
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.dont_write_bytecode = True  # importing run.py must not leave bench/__pycache__ behind
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402  (bench/run.py holds the server helpers)
    RELEASE, BenchError, Lab, Server, Tools, find_tool, free_port, log, nginx_can_proxy,
    nginx_main, port_of, raise_fd_limit, start_nginx,
)

ATTACKS = ("keepalive", "slowloris")
TARGETS = ("relevo", "nginx")
# The page every request asks for, and its body.
PAGE = "/page.html"
PAGE_BODY = b"<!doctype html><title>slots</title><p>" + b"x" * 200 + b"</p>\n"
# A probe unanswered for this long counts as a timeout.
PROBE_TIMEOUT_SECS = 5.0
# Connections opened at once while the attack is set up: below the listen backlog of Rust's
# std (128), so no SYN is dropped and retried a second later.
OPEN_BATCH = 100
# How long setting up the attack may take before the run is abandoned.
SETUP_TIMEOUT_SECS = 60.0
# After the probes end, attack requests still waiting get this long for their answer.
DRAIN_SECS = 2.0


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/slots.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack", default=",".join(ATTACKS), help="keepalive, slowloris or both")
    parser.add_argument("--targets", default=",".join(TARGETS), help="relevo, nginx or both")
    parser.add_argument("--proxy", type=Path, default=RELEASE / "proxy",
                        help="the Relevo binary (default target/release/proxy)")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help="Relevo's max_connections (default: the binary's own default)")
    parser.add_argument("--relevo-config", action="append", default=[], metavar="KEY=VALUE",
                        help="another proxy.conf line for Relevo (repeatable)")
    parser.add_argument("--connections", type=int, metavar="N",
                        help="attack connections (default 1,024 keepalive, 1,100 slowloris)")
    parser.add_argument("--interval", type=float, default=10.0, metavar="SECS",
                        help="keepalive: seconds between two requests of a connection")
    parser.add_argument("--drip", type=float, default=1.0, metavar="SECS",
                        help="slowloris: seconds between two header lines")
    parser.add_argument("--duration", type=float, default=40.0, metavar="SECS",
                        help="seconds of probing (default 40)")
    parser.add_argument("--probe-every", type=float, default=1.0, metavar="SECS")
    args = parser.parse_args(argv)
    args.attacks = [a for a in ATTACKS if a in args.attack.split(",")]
    args.target_list = [t for t in TARGETS if t in args.targets.split(",")]
    if not args.attacks or not args.target_list:
        parser.error("nothing to run: check --attack and --targets")
    return args


# --------------------------------------------------------------------------------------------
# The event loop: non-blocking sockets, one selector, timers
# --------------------------------------------------------------------------------------------


class Loop:
    """One thread drives every socket: callbacks on readiness, and timers."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.timers: list = []
        self.seq = itertools.count()

    def at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (when, next(self.seq), callback))

    def watch(self, sock: socket.socket, events: int, callback: Callable[[int], None]) -> None:
        try:
            self.selector.modify(sock, events, callback)
        except KeyError:
            self.selector.register(sock, events, callback)

    def forget(self, sock: socket.socket) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def run_until(self, deadline: float, done: Callable[[], bool] = lambda: False) -> None:
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return
            while self.timers and self.timers[0][0] <= now:
                _, _, callback = heapq.heappop(self.timers)
                callback()
            wait = deadline - now
            if self.timers:
                wait = min(wait, max(0.0, self.timers[0][0] - now))
            for key, events in self.selector.select(wait):
                key.data(events)


def start_connect(port: int) -> socket.socket:
    """A non-blocking socket connecting to 127.0.0.1:port (done when it is writable)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    code = sock.connect_ex(("127.0.0.1", port))
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        raise ConnectionRefusedError(code, "connect failed")
    return sock


def connected(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


def status_of(data: bytes) -> Optional[int]:
    """The status code of a response that starts `data`, once its status line is there."""
    if b"\r\n" not in data or not data.startswith(b"HTTP/1."):
        return None
    try:
        return int(data[9:12])
    except ValueError:
        return -1


def response_end(data: bytes) -> Optional[int]:
    """Where the first response in `data` ends, if it is all there (Content-Length framing)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    length = 0
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    end = head_end + 4 + length
    return end if len(data) >= end else None


# --------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------


class Probes:
    """A new connection every `every` seconds asking for the page; the outcomes counted."""

    OUTCOMES = ("200", "503", "other", "closed", "refused", "timeout")

    def __init__(self, loop: Loop, port: int, every: float, until: float):
        self.loop, self.port, self.every, self.until = loop, port, every, until
        self.counts = dict.fromkeys(self.OUTCOMES, 0)
        self.pending = 0
        # When the probes that got no 200 were sent, in seconds from the first probe.
        self.misses: List[float] = []
        self.first = 0.0

    def start(self, first: float) -> None:
        self.first = first
        self.loop.at(first, self.fire)

    def fire(self) -> None:
        now = time.monotonic()
        if now + self.every <= self.until + 1e-6:
            self.loop.at(now + self.every, self.fire)
        self.pending += 1
        try:
            sock = start_connect(self.port)
        except OSError:
            self.finish(None, "refused")
            return
        state = {"data": b"", "done": False, "sent": now}
        deadline = now + PROBE_TIMEOUT_SECS

        def give_up() -> None:
            self.finish(sock, "timeout", state)

        def on_event(events: int) -> None:
            if state["done"]:
                return
            if events & selectors.EVENT_WRITE:
                if not connected(sock):
                    self.finish(sock, "refused", state)
                    return
                try:
                    sock.send(f"GET {PAGE} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
                              .encode())
                except OSError:
                    self.finish(sock, "closed", state)
                    return
                self.loop.watch(sock, selectors.EVENT_READ, on_event)
                return
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            state["data"] += chunk
            status = status_of(state["data"])
            if status is not None:
                outcome = str(status) if status in (200, 503) else "other"
                self.finish(sock, outcome, state)
            elif not chunk:
                self.finish(sock, "closed", state)

        self.loop.watch(sock, selectors.EVENT_WRITE, on_event)
        self.loop.at(deadline, give_up)

    def finish(self, sock: Optional[socket.socket], outcome: str, state: Optional[dict] = None):
        if state is not None:
            if state["done"]:
                return
            state["done"] = True
        if outcome != "200":
            sent = state["sent"] if state else time.monotonic()
            self.misses.append(sent - self.first)
        if sock is not None:
            self.loop.forget(sock)
            sock.close()
        self.counts[outcome] += 1
        self.pending -= 1


# --------------------------------------------------------------------------------------------
# Attack connections
# --------------------------------------------------------------------------------------------


class Tally:
    """What the attack connections got."""

    def __init__(self):
        self.counts: Dict[str, int] = {}

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def summary(counts: Dict[str, int]) -> str:
    """`what n, what n` in alphabetical order."""
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "-"


class KeepAliveClient:
    """One keep-alive connection: a request every `interval`, reopened when closed."""

    def __init__(self, loop: Loop, port: int, interval: float, tally: Tally):
        self.loop, self.port, self.interval, self.tally = loop, port, interval, tally
        self.sock: Optional[socket.socket] = None
        self.data = b""
        self.waiting = False  # a request is out and its response not yet whole
        self.answered = 0

    def settled(self) -> bool:
        """Whether the last request has its answer (or failed)."""
        return not self.waiting

    def step(self) -> None:
        """Sends the next request, opening a connection first if there is none."""
        if self.waiting:
            self.tally.add("request still unanswered at the next one")
            return
        if self.sock is None:
            try:
                self.sock = start_connect(self.port)
            except OSError:
                self.tally.add("connect refused")
                return
            self.tally.add("connections opened")
            self.loop.watch(self.sock, selectors.EVENT_WRITE, self.on_event)
            self.waiting = True
            return
        self.send()

    def send(self) -> None:
        try:
            self.sock.send(f"GET {PAGE} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        except OSError:
            self.close("closed when sending")
            return
        self.waiting = True
        self.data = b""
        self.loop.watch(self.sock, selectors.EVENT_READ, self.on_event)

    def on_event(self, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            if not connected(self.sock):
                self.close("connect refused")
                return
            self.send()
            return
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close("closed while waiting for a response" if self.waiting
                       else "closed by the proxy while idle")
            return
        self.data += chunk
        end = response_end(self.data) if self.waiting else None
        if end is None:
            return
        status = status_of(self.data)
        self.tally.add(f"answered {status}")
        self.answered += 1
        head = self.data[:end].lower()
        self.data = self.data[end:]
        self.waiting = False
        if b"connection: close" in head:
            self.close(None)

    def close(self, why: Optional[str]) -> None:
        if why:
            self.tally.add(why)
        if self.sock is not None:
            self.loop.forget(self.sock)
            self.sock.close()
        self.sock = None
        self.waiting = False


class SlowlorisClient:
    """One slowloris connection: a header line every `drip`, reopened at the next tick when
    the proxy closes it."""

    def __init__(self, loop: Loop, port: int, drip: float, tally: Tally, n: int):
        self.loop, self.port, self.drip, self.tally, self.n = loop, port, drip, tally, n
        self.sock: Optional[socket.socket] = None
        self.open = False  # connected and the request line sent
        self.data = b""

    def settled(self) -> bool:
        """Whether the connection is open and the request line sent (or it failed)."""
        return self.open or self.sock is None

    def step(self) -> None:
        """Opens the connection if there is none, else sends one more header line."""
        if self.sock is None:
            try:
                self.sock = start_connect(self.port)
            except OSError:
                self.tally.add("connect refused")
                return
            self.tally.add("connections opened")
            self.loop.watch(self.sock, selectors.EVENT_WRITE | selectors.EVENT_READ,
                            self.on_event)
            return
        if self.open:
            self.send(b"X-Slow: a\r\n")

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            self.close()

    def on_event(self, events: int) -> None:
        if not self.open and events & selectors.EVENT_WRITE:
            if not connected(self.sock):
                self.tally.add("connect refused")
                self.close(count=False)
                return
            self.open = True
            self.loop.watch(self.sock, selectors.EVENT_READ, self.on_event)
            self.send(f"GET /?{self.n} HTTP/1.1\r\nHost: bench\r\n".encode())
            return
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        self.data += chunk
        if not chunk:
            self.close()

    def close(self, count: bool = True) -> None:
        if count:
            status = status_of(self.data)
            self.tally.add(f"closed after {status}" if status else "closed without an answer")
        if self.sock is not None:
            self.loop.forget(self.sock)
            self.sock.close()
        self.sock = None
        self.open = False
        self.data = b""


# --------------------------------------------------------------------------------------------
# A run: one attack against one target
# --------------------------------------------------------------------------------------------


def run_attack(attack: str, port: int, args: argparse.Namespace) -> dict:
    loop = Loop()
    tally = Tally()
    n = args.connections or (1024 if attack == "keepalive" else 1100)
    if attack == "keepalive":
        clients = [KeepAliveClient(loop, port, args.interval, tally) for _ in range(n)]
        setup = "each made one request"
    else:
        clients = [SlowlorisClient(loop, port, args.drip, tally, i) for i in range(n)]
        setup = "each sent a partial head"
    # Set up: open every connection, OPEN_BATCH at a time.
    started = time.monotonic()
    for first in range(0, n, OPEN_BATCH):
        batch = clients[first:first + OPEN_BATCH]
        for client in batch:
            client.step()

        def settled() -> bool:
            return all(c.settled() for c in batch)

        loop.run_until(started + SETUP_TIMEOUT_SECS, settled)
        if not settled():
            raise BenchError(f"{attack}: setting up took over {SETUP_TIMEOUT_SECS:.0f} s")
    log(f"  {n:,} connections open, {setup} ({time.monotonic() - started:.1f} s): "
        f"{summary(tally.counts)}")
    tally.counts.clear()

    # The attack runs, and the probes with it.
    now = time.monotonic()
    until = now + args.duration
    period = args.interval if attack == "keepalive" else args.drip
    for i, client in enumerate(clients):
        schedule(loop, now + period * i / n, period, until, client.step)
    probes = Probes(loop, port, args.probe_every, until)
    probes.start(now + args.probe_every / 2)
    loop.run_until(until)
    loop.run_until(time.monotonic() + max(DRAIN_SECS, PROBE_TIMEOUT_SECS),
                   lambda: probes.pending == 0)
    for client in clients:
        if client.sock is not None:
            client.sock.close()
    return {"connections": n, "probes": probes.counts, "attack": dict(tally.counts),
            "misses": probes.misses}


def schedule(loop: Loop, first: float, period: float, until: float,
             callback: Callable[[], None]) -> None:
    """Runs `callback` at `first` and every `period` after, until `until`."""
    def fire(when: float = first) -> None:
        callback()
        if when + period < until:
            loop.at(when + period, lambda: fire(when + period))
    loop.at(first, fire)


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


def start_backend(lab: Lab) -> int:
    root = lab.tmp / "www"
    root.mkdir()
    (root / PAGE.lstrip("/")).write_bytes(PAGE_BODY)
    for path in (root, root / PAGE.lstrip("/")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    if lab.tools.nginx:
        port = free_port()
        start_nginx(lab, "backend", nginx_main(lab, "backend") + f"""
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
        return port
    server = lab.start("backend", [str(RELEASE / "webserver"), "--listen", "127.0.0.1:0",
                                   "--root", str(root), "--name", "backend"], "listening on")
    return port_of(server)


def start_relevo(lab: Lab, args: argparse.Namespace, backend: int, name: str) -> Server:
    lines = ["listen = 127.0.0.1:0", f"backend = 127.0.0.1:{backend}",
             f"log_file = {lab.tmp / name}.log", "log_level = warn", "access_log = off",
             "cache = off"]
    if args.max_connections:
        lines.append(f"max_connections = {args.max_connections}")
    lines += args.relevo_config
    conf = lab.tmp / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    server = lab.start(name, [str(args.proxy), str(conf)], "listening on")
    server.port = port_of(server)
    return server


def start_nginx_proxy(lab: Lab, backend: int, name: str) -> Server:
    port = free_port()
    server = start_nginx(lab, name, nginx_main(lab, name) + f"""
    upstream backends {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")
    server.port = port
    return server


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def report(results: List[tuple]) -> str:
    header = ("| attack | target | probes | 200 | 503 | other | closed | refused | timeout "
              "| attack connections got |")
    lines = [header, "|" + "---|" * 10]
    for attack, target, result in results:
        p = result["probes"]
        total = sum(p.values())
        lines.append(f"| {attack} ({result['connections']:,}) | {target} | {total} | {p['200']} "
                     f"| {p['503']} | {p['other']} | {p['closed']} | {p['refused']} "
                     f"| {p['timeout']} | {summary(result['attack'])} |")
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    if "relevo" in args.target_list and not args.proxy.exists():
        log(f"slots: {args.proxy} not found: run `cargo build --release --bins`")
        return 1
    nginx = find_tool("nginx")
    if "nginx" in args.target_list and not (nginx and nginx_can_proxy(nginx)):
        log("slots: nginx (with its proxy module) is not installed: the nginx target is "
            "skipped (apt-get install nginx-light)")
        args.target_list.remove("nginx")
    nofile = raise_fd_limit()
    lab = Lab(Tools(wrk="", curl=None, nginx=nginx, haproxy=None, taskset=None), nofile)
    results = []
    try:
        backend = start_backend(lab)
        for attack in args.attacks:
            for target in args.target_list:
                name = f"{target}-{attack}"
                log(f"{attack} against {target}")
                if target == "relevo":
                    server = start_relevo(lab, args, backend, name)
                else:
                    server = start_nginx_proxy(lab, backend, name)
                try:
                    result = run_attack(attack, server.port, args)
                    server.check_alive()
                finally:
                    server.stop()
                log(f"  probes: {summary(result['probes'])}")
                misses = result["misses"]
                if misses:
                    at = ", ".join(f"{t:.1f}" for t in misses[:10])
                    more = f" and {len(misses) - 10} more" if len(misses) > 10 else ""
                    log(f"  probes without a 200 were sent at (s from the first): {at}{more}")
                log(f"  attack: {summary(result['attack'])}")
                results.append((attack, target, result))
        print(report(results))
        return 0
    except BenchError as e:
        log(f"slots: {e}")
        return 1
    except KeyboardInterrupt:
        log("slots: interrupted")
        return 130
    finally:
        lab.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
