# Relevo: `make run` for the demo, `make test` for every test. Only the Rust toolchain is needed.
# `make bench` compares Relevo with nginx and HAProxy (needs python3 and wrk; see bench/run.py).
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: all build run test bench flush clean

all: build

build:
	$(CARGO) build --release --bins

# Three webservers and the proxy in the foreground; Ctrl-C (or any of them exiting) stops all four.
run: build
	@mkdir -p logs cache
	@set -m; pids=(); \
	trap '{ kill $${pids[@]}; wait; } 2>/dev/null; echo "relevo: all four servers stopped"' EXIT; \
	trap 'exit 130' INT TERM; \
	for n in 1 2 3; do \
	  $(RELEASE)/webserver --port 808$$n --root www --name server-$$n --log logs/webserver-$$n.log & pids+=($$!); \
	done; \
	$(RELEASE)/proxy proxy.conf & pids+=($$!); \
	wait -n; exit 1

test:
	$(CARGO) test --all-targets

# Options go through BENCH_ARGS: make bench BENCH_ARGS="--quick", or "--only ka1k-64,idle10k".
bench: build
	python3 bench/run.py $(BENCH_ARGS)

flush:
	@find cache -mindepth 1 ! -name .gitkeep -delete 2>/dev/null; echo "cache/ emptied"

clean:
	$(CARGO) clean
	@find cache logs -mindepth 1 ! -name .gitkeep -delete 2>/dev/null; true
