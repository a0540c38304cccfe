# Relevo: `make run` for the demo, `make test` for every test. Only the Rust toolchain is needed.
# `make bench` compares Relevo with nginx, HAProxy and Apache httpd (needs python3 and wrk; see bench/run.py).
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: all build run demo test bench flush reload stop clean

all: build

build:
	$(CARGO) build --release --bins

# Three webservers and the proxy in the foreground; Ctrl-C stops all four. The open-file
# limit is raised to its hard limit first (no privilege needed), so the default
# max_connections fits it (two files per connection). Each webserver runs
# under a small supervisor loop that restarts it RESTART_DELAY seconds after it stops (as a
# service manager would), so `make demo` can stop one and show it come back. Every job gets its
# own process group (set -m), and the exit trap kills whole groups: nothing is left behind.
# Ctrl-C is how the demo ends, so it exits 0 and make prints no error; so does `make stop` (the
# proxy's graceful stop, status 0). The proxy failing ends it with the proxy's status, and a
# SIGTERM with 143.
RESTART_DELAY ?= 3
run: build
	@mkdir -p logs cache
	@ulimit -n "$$(ulimit -Hn)" 2>/dev/null; set -m; pids=(); \
	trap 'for p in $${pids[@]}; do kill -- -$$p; done 2>/dev/null; wait 2>/dev/null; echo "relevo: all four servers stopped"' EXIT; \
	trap 'exit 0' INT; trap 'exit 143' TERM; \
	for n in 1 2 3; do \
	  ( while :; do \
	      $(RELEASE)/webserver --port 808$$n --root www --name server-$$n --log logs/webserver-$$n.log; \
	      echo "relevo: server-$$n stopped; restarting it in $(RESTART_DELAY) s"; sleep $(RESTART_DELAY); \
	    done ) & pids+=($$!); \
	done; \
	$(RELEASE)/proxy proxy.conf & pids+=($$!); \
	wait $$!

# With `make run` going in another terminal: round robin, a cache miss then a hit, a 501, and a
# backend stopped (failover) and restarted, step by step with the project's client. It writes
# nothing into the checkout, and stops server-2 by its process id.
demo: build
	@bash tests/demo.sh

test:
	$(CARGO) test --all-targets

# Options go through BENCH_ARGS: make bench BENCH_ARGS="--quick", or "--only ka1k-64,idle10k".
bench: build
	python3 bench/run.py $(BENCH_ARGS)

# With `make run` going: the proxy reads proxy.conf again (no connection dropped), or stops
# gracefully (requests in flight finish), which ends `make run`.
reload: build
	$(RELEASE)/proxy --reload proxy.conf

stop: build
	$(RELEASE)/proxy --stop proxy.conf

# Removes the cache's entry files (the cache_dir of proxy.conf), and nothing else.
flush: build
	$(RELEASE)/proxy proxy.conf --flush-cache

clean:
	$(CARGO) clean
	@find cache logs -mindepth 1 ! -name .gitkeep -delete 2>/dev/null; true
