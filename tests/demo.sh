#!/usr/bin/env bash
# `make demo`: a walk through Relevo for a class, with `make run` going in another terminal.
# Every step uses the project's own client (target/release/client) against the proxy on
# localhost:8080 and prints what to look at. Open http://localhost:8080/relevo/status on the
# projector beside it to see the same events on the status page. The demo writes only into a
# temporary directory, changes weights, drains and disables through the status page's own
# endpoint (and puts them back), and stops server-2 (step 7) by its process id, nothing else.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

PROXY=${PROXY:-http://localhost:8080}
CLIENT=$ROOT/target/release/client
# Everything the demo itself writes (the client's log and cache, the image it fetches) goes
# into a temporary directory, removed at the end: the checkout is left as it was.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
LOG=$WORK/client.log
CACHE_DIR=$WORK/cache                       # the client's own cache stays out of the way

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }

# One request, `show [OPTIONS] URL`; prints the status line and the headers that tell the story.
show() {
  local url=${*: -1}
  "$CLIENT" --no-cache --cache-dir "$CACHE_DIR" -i "${@:1:$#-1}" "$LOG" "$url" 2>&1 \
    | grep -E '^(HTTP/1\.[01] |X-Served-By|X-Cache|Age|client:)' | sed 's/^/    /'
}

# The process id of server-2 as `make run` started it: the one listening on port 8082, if it
# runs this checkout's webserver binary (a rebuild leaves the running one marked deleted).
server2_pid() {
  local pid exe
  pid=$(ss -Hltnp 'sport = :8082' 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)
  [ -n "$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$ROOT/target/release/webserver" ] || return 1
  echo "$pid"
}

served_by() {
  "$CLIENT" --no-cache --cache-dir "$CACHE_DIR" -i "$LOG" "$1" 2>/dev/null \
    | tr -d '\r' | sed -n 's/^X-Served-By: //p'
}

# The same 30 requests, and how many each server answered.
distribution() {
  for _ in $(seq 30); do served_by "$PROXY/"; done | sort | uniq -c \
    | awk '{ printf "    %-10s %2d  ", $2, $1; for (i = 0; i < $1; i++) printf "#"; print "" }'
}

# What a button of the status page does, from the command line: `control FORM`. Asking for
# text/plain gets one line back instead of the 303 a browser follows back to the page.
control() {
  "$CLIENT" --no-cache --cache-dir "$CACHE_DIR" -H 'Accept: text/plain' -d "$1" "$LOG" \
    "$PROXY/relevo/status/backends" 2>&1 | sed 's/^/    /'
}

if ! "$CLIENT" --no-cache --cache-dir "$CACHE_DIR" -I "$LOG" "$PROXY/" >/dev/null 2>&1; then
  echo "demo: nothing answers at $PROXY. Start the servers first, in another terminal: make run"
  exit 1
fi

step "1. Round robin: three requests for the same page, three different servers"
for _ in 1 2 3; do show "$PROXY/"; done
say "The page says Cache-Control: no-cache (each server writes its own name in it), so the"
say "proxy checks every copy with the next backend: the rotation stays visible."

step "2. The cache: the same image twice, a miss and then a hit"
IMAGE="$PROXY/img/relevo.png?demo=$(date +%s)"
show "$IMAGE"
show "$IMAGE"
say "The second answer came from a file under cache/ (X-Cache: HIT, with its Age)."
say "No backend saw it: look for it in the make run terminal, it is not there."

step "3. A method the proxy does not forward: 501 Not Implemented"
show -X DELETE "$PROXY/"
say "proxy.conf says methods = GET HEAD POST; nothing was sent to a backend."

step "4. Weights: the same 30 requests, before and after server-1 gets weight=3"
say "Round robin, every backend at weight 1:"
distribution
control "backend=127.0.0.1:8081&action=weight&weight=3"
say "Smooth weighted round robin (nginx's): 3:1:1 is 18/6/6, and never three in a row:"
distribution
control "backend=127.0.0.1:8081&action=weight&weight=1"
say "(weight back to 1; the status page has these as the weight buttons of each row)"

step "5. Drain server-2 from the status page instead of stopping it"
control "backend=127.0.0.1:8082&action=drain"
distribution
say "No new request goes to server-2; one in flight there would have finished, and its"
say "idle keep-alive connections were closed. The status page shows it drained (disabled)."
control "backend=127.0.0.1:8082&action=enable"
say "Back in rotation:"
distribution

step "6. Every backend down: the images are still served"
for port in 8081 8082 8083; do control "backend=127.0.0.1:$port&action=disable"; done
show "$PROXY/"
show "$IMAGE"
say "No backend takes requests (disabled from the status page, as if all three were down):"
say "the page must be checked with a backend each time (no-cache), so it is a 502, while"
say "the image comes from the cache: a HIT while fresh, and STALE-IF-ERROR once stale (for"
say "up to cache_stale_if_error, a day by default)."
for port in 8081 8082 8083; do control "backend=127.0.0.1:$port&action=enable"; done

step "7. A backend goes down: server-2 is stopped"
if ! server2=$(server2_pid) || ! kill "$server2"; then
  say "(server-2 is not running under make run; skipping this step)"
  exit 0
fi
say "(stopped process $server2, the webserver make run started on port 8082)"
for _ in 1 2 3 4; do show "$PROXY/"; done
say "No 502: the connection to server-2 was refused, so the proxy tried the next"
say "backend and marked server-2 down for fail_timeout (5 s in proxy.conf)."

step "8. make run restarts server-2, and after fail_timeout it is back in the rotation"
for _ in $(seq 30); do
  "$CLIENT" --no-cache --cache-dir "$CACHE_DIR" -I "$LOG" http://localhost:8082/ >/dev/null 2>&1 && break
  sleep 0.5
done
say "server-2 answers again on port 8082; waiting for the proxy to take it back..."
back=""
for _ in $(seq 20); do
  if [ "$(served_by "$PROXY/")" = "server-2" ]; then back=yes; break; fi
  sleep 0.5
done
if [ -n "$back" ]; then
  for _ in 1 2 3; do show "$PROXY/"; done
  say "server-2 is serving again."
else
  say "server-2 did not come back yet: is make run still going?"
fi

step "Done. Each request above is a line in logs/proxy.log and logs/access.log (make run's)."
say "The client logged them too; its log (in $WORK, removed now) ends with:"
tail -n 3 "$LOG" | sed 's/^/    /'
