# `sudo make run` runs with sudo's secure_path, which lacks Go's usual
# /usr/local/go/bin: look there too.
GO ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: all build install run test deps bench bench-burst fuzz

all: build

build:
	$(GO) build -o nixpushd ./cmd/nixpushd

# Installs the daemon, the hook link (nixpushd-hook, the name Nix's
# post-build-hook runs it by) and the shipped systemd units, with their
# paths rewritten for PREFIX. TO, when given, replaces the units' example
# --to (an `&` in it is kept). DESTDIR stages the tree for a package.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
TO ?=
install: build
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)"
	install -m 0755 nixpushd "$(DESTDIR)$(BINDIR)/nixpushd"
	ln -sfn nixpushd "$(DESTDIR)$(BINDIR)/nixpushd-hook"
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
	  $(if $(TO),-e 's|--to=s3://nix-cache?endpoint=s3.example.org |--to=$(subst &,\&,$(TO)) |') \
	  nixos-module/nixpushd.service >"$(DESTDIR)$(UNITDIR)/nixpushd.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/nixpushd.service"
	install -m 0644 nixos-module/nixpushd.socket "$(DESTDIR)$(UNITDIR)/nixpushd.socket"

# The main job: the daemon, in the foreground. With no --to it pushes into
# the local file:// cache in its state directory, signed with a key it
# makes on first start. ARGS reaches it through the environment, split on
# spaces only: `&`, `?` and `;` in an S3 URL stay part of it.
run: build
	@set -f; exec ./nixpushd daemon $$NIXPUSHD_RUN_ARGS

run: export NIXPUSHD_RUN_ARGS = $(value ARGS)

deps:
	.ci/install-deps

# The whole test suite: vet and the linters of .golangci.yml, unit tests,
# and integration tests against real Nix and real MinIO (installed by
# `deps` when missing).
test: deps
	$(GO) vet ./...
	golangci-lint run ./...
	$(GO) test -count=1 -timeout 20m ./...

# Performance figures, measured side by side in one run: nixpushd against
# the seed guides' workflow on a >200 MB closure of real files and on 5,051
# small paths (with mc mirror's floor and the daemon), requests per push,
# a 100k-path closure against nix copy, gc and verify on 20,000 narinfos,
# 1 GiB NAR peak RSS, no-op re-push, hook latency, idle CPU; then the
# micro-benchmarks (NAR, hashing, compressors, reconcile on 100k paths).
# BenchmarkBurst (issue #21: daemon burst against the one-shot push, 3
# runs, min–max) runs with the others; `make bench-burst` runs it alone,
# BURST_BASE=/tmp/old/nixpushd alternating an older binary.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 90m ./cmd/nixpushd/
	$(GO) test -run '^$$' -bench . ./nar/ ./upload/ ./compression/ ./store/

bench-burst: deps
	$(GO) test -run '^$$' -bench '^BenchmarkBurst$$' -benchtime 1x -timeout 60m ./cmd/nixpushd/

# Every fuzz target for FUZZTIME each (the seed corpora also run in `test`).
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "$$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done
