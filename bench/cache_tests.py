#!/usr/bin/env python3
"""Relevo's score on the HTTP caching test suite (github.com/http-tests/cache-tests, the suite
behind cache-tests.fyi), with the suite's recommended reverse-proxy setup.

    bench/cache_tests.py /path/to/cache-tests          # the whole suite: summary + failures
    bench/cache_tests.py CHECKOUT --id freshness-none  # one test, with its request/response dump
    bench/cache_tests.py CHECKOUT --json results.json  # also keep the raw results

The checkout needs its dependencies (`npm i` in it once) and Node 14.8 or later. The script
starts the suite's origin server on a free loopback port, a Relevo proxy in front of it
(target/release/proxy by default, `--proxy PATH` for another build; build it first with
`cargo build --release`) with one backend, `methods = *` and `cache_ttl = 0`, its cache and
logs in a temporary directory, and runs the suite's command-line client against the proxy.
Everything it starts is stopped at the end, also on Ctrl-C, and the temporary directory is
removed. It is not part of `make test`: it needs Node and a checkout of the suite.

Grading follows cache-tests.fyi: a test counts when its kind is `required` (the default) or
`optimal`, not `check`, and it is not `browser_only`; it passes when the site would show it
green, so a test whose `depends_on` did not pass does not pass either. The suite holds 265
such tests at the time of writing.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
# Seconds the origin server and the proxy get to print their listening line.
START_TIMEOUT_SECS = 30
# Seconds the whole client run may take (the suite itself takes about a minute).
RUN_TIMEOUT_SECS = 900

# Reads the results JSON on stdin and prints one line per graded test: `pass ID` or
# `fail ID KIND`, using the suite's own result rules (dependencies honoured).
GRADER = r"""
import tests from './tests/index.mjs'
import { determineTestResult, resultTypes } from './test-engine/lib/results.mjs'
let input = ''
for await (const chunk of process.stdin) input += chunk
const results = JSON.parse(input)
for (const suite of tests) {
  for (const test of suite.tests) {
    const kind = test.kind || 'required'
    if (kind === 'check' || test.browser_only) continue
    const verdict = determineTestResult(tests, test.id, results)
    const passed = verdict === resultTypes.pass
    const detail = JSON.stringify(results[test.id] === true ? '' : results[test.id])
    console.log(`${passed ? 'pass' : 'fail'}\t${test.id}\t${kind}\t${verdict[2]}\t${detail}`)
  }
}
"""


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/cache_tests.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a cache-tests checkout with `npm i` done")
    parser.add_argument("--proxy", type=Path, default=ROOT / "target/release/proxy",
                        help="the Relevo binary (default target/release/proxy)")
    parser.add_argument("--id", help="run this one test and print the suite's dump of it")
    parser.add_argument("--json", type=Path, help="write the raw results JSON here too")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="another proxy.conf line (repeatable)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (the proxy's logs and cache)")
    return parser.parse_args(argv)


def start(cmd: List[str], cwd: Path, env: dict, marker: str) -> (subprocess.Popen, str):
    """Starts `cmd` in a process group of its own and returns it with the address it prints
    on the first line containing `marker` (`host:port`)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    while line and marker not in line:
        line = proc.stdout.readline()
    if not line:
        stop(proc)
        raise SystemExit(f"{cmd[0]} stopped before printing '{marker}'")
    address = line.split(marker, 1)[1].strip().split("://")[-1].rstrip("/")
    # The proxy logs to its terminal too: what it prints is read on, or a full pipe would
    # block its logging (and every request with it).
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, address


def stop(proc: Optional[subprocess.Popen]) -> None:
    """Stops a process started by `start` (its whole group) and waits for it."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def proxy_config(tmp: Path, origin_port: str, extra: List[str]) -> Path:
    """Writes the suite's recommended setup: one backend, every method, no default TTL."""
    lines = [
        "listen = 127.0.0.1:0",
        f"backend = 127.0.0.1:{origin_port}",
        "methods = *",
        "cache_ttl = 0",
        f"cache_dir = {tmp / 'cache'}",
        f"log_file = {tmp / 'proxy.log'}",
        f"access_log = {tmp / 'access.log'}",
    ] + [line.replace("=", " = ", 1) for line in extra]
    path = tmp / "proxy.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_client(checkout: Path, base: str, test_id: Optional[str]) -> str:
    env = dict(os.environ, npm_config_base=base, npm_package_config_id=test_id or "")
    done = subprocess.run(["node", "--no-warnings", "test-engine/cli.mjs"], cwd=checkout, env=env,
                          stdout=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_SECS, check=True)
    return done.stdout


def grade(checkout: Path, results: str) -> List[List[str]]:
    done = subprocess.run(["node", "--input-type=module", "-e", GRADER], cwd=checkout,
                          input=results, stdout=subprocess.PIPE, text=True, check=True)
    return [line.split("\t") for line in done.stdout.splitlines()]


def report(rows: List[List[str]]) -> None:
    passed = sum(1 for row in rows if row[0] == "pass")
    print(f"cache-tests: {passed} of {len(rows)} graded tests pass")
    for verdict, test_id, kind, symbol, detail in rows:
        if verdict == "fail":
            print(f"  {symbol} {test_id} ({kind}) {detail}")


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    checkout = args.checkout.resolve()
    if not (checkout / "node_modules").is_dir():
        raise SystemExit(f"{checkout}: run `npm i` there first")
    if not args.proxy.is_file():
        raise SystemExit(f"{args.proxy}: build it first (cargo build --release)")
    tmp = Path(tempfile.mkdtemp(prefix="relevo-cache-tests-"))
    origin = proxy = None
    try:
        env = dict(os.environ, npm_config_protocol="http", npm_config_port="0",
                   npm_config_pidfile=str(tmp / "origin.pid"))
        origin, origin_addr = start(["node", "test-engine/server/server.mjs"], checkout, env,
                                    "Listening on ")
        config = proxy_config(tmp, origin_addr.rsplit(":", 1)[1], args.config)
        proxy, proxy_addr = start([str(args.proxy), str(config)], tmp, dict(os.environ),
                                  "listening on ")
        output = run_client(checkout, f"http://{proxy_addr}", args.id)
        if args.id:
            print(output)
            return 0
        if args.json:
            args.json.write_text(output)
        report(grade(checkout, output))
        return 0
    finally:
        stop(proxy)
        stop(origin)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
