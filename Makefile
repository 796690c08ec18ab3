# rcsd — see README.md. `make run` starts the server on embedded defaults,
# `make test` installs what the tests need (Debian packages, as root) and
# runs every test.
GO      ?= go
BIN     ?= bin/rcsd
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X rcsd/config.Version=$(VERSION)

.PHONY: all build run test deps lint fuzz bench bench-register bench-message bench-message-redis clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rcsd

run:
	$(GO) run ./cmd/rcsd serve

# Installs SIPp and friends when missing; never skipped silently.
deps:
	./scripts/install-deps.sh

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# Short fuzzing pass over every parser's fuzz target.
fuzz:
	$(GO) test ./registrar/digest -run '^$$' -fuzz FuzzParseCredentials -fuzztime 20s
	$(GO) test ./identity -run '^$$' -fuzz FuzzCanonical -fuzztime 20s
	$(GO) test ./registrar -run '^$$' -fuzz FuzzRegister -fuzztime 20s
	$(GO) test ./registrar/aka -run '^$$' -fuzz FuzzParseNonce -fuzztime 10s
	$(GO) test ./registrar -run '^$$' -fuzz FuzzThirdParty -fuzztime 20s
	$(GO) test ./regevent -run '^$$' -fuzz FuzzParse -fuzztime 20s
	$(GO) test ./secagree -run '^$$' -fuzz FuzzParse -fuzztime 20s
	$(GO) test ./cpim -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./imdn -run '^$$' -fuzz FuzzParse -fuzztime 60s
	$(GO) test ./sip -run '^$$' -fuzz FuzzFlowToken -fuzztime 20s

bench: bench-register bench-message

# REGISTER+digest load from SIPp against rcsd and Kamailio in one run.
bench-register: build
	./scripts/install-deps.sh kamailio
	./bench/register.sh --rcsd $(BIN)

# Pager MESSAGE (relay, store-and-forward, drain) against Kamailio
# (t_relay, msilo on SQLite) in one run, the store case also against two
# rcsd nodes sharing one redis-server; see bench/README.md.
bench-message: build
	./scripts/install-deps.sh kamailio
	./bench/message.sh --rcsd $(BIN)

# Stored MESSAGEs: one rcsd on its file store against two rcsd nodes sharing
# one redis-server (appendfsync everysec, and always), the same SIPp load split
# across the nodes, in one run; Redis commands and round trips per stored
# message, and the commands of one stored MESSAGE under MONITOR.
bench-message-redis: build
	./scripts/install-deps.sh
	./bench/message.sh --rcsd $(BIN) --case store --servers "rcsd rcsd-redis rcsd-redis-always" \
		--store-rates "500 1000 2000 3000 3500 4000" --duration 5 --repeat 2 --redis-monitor 200

clean:
	rm -rf bin
