GO ?= go
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: all build run test deps bench fuzz

all: build

build:
	$(GO) build -o nixpushd ./cmd/nixpushd

# The main job: the daemon. With no --to it pushes into the local file://
# cache in its state directory.
run: build
	./nixpushd daemon $(ARGS)

deps:
	.ci/install-deps

# The whole test suite: unit tests, and integration tests against real Nix
# and real MinIO (installed by `deps` when missing).
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench: deps build
	./bench/run.sh
