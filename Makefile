# liveroom — `make test` is the one command that runs every test.
GO ?= go
PKGS := ./...

.PHONY: test check vet deps bench fuzz run

## test: install what the tests need, check formatting and vet, run every test with the race
## detector, then the multi-process fault tests (which skip themselves under -race: they need
## the CPU for hundreds of viewers and nine processes on two cores), then every fuzzer briefly
test: deps check
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	bash -o pipefail -c "$(GO) test -count=1 -timeout 20m -v ./internal/faulttest 2>&1 | grep -v '^=== '"
	$(MAKE) fuzz

## fuzz: run each native fuzzer for FUZZTIME (one target per `go test -fuzz` run); their seed
## corpora live in testdata/fuzz/<Fuzzer>/ beside each package and also run as plain tests.
## FUZZTIME is a count of inputs, not a duration: Go 1.26's fuzz coordinator can report its own
## -fuzztime deadline as a failure ("context deadline exceeded", no crasher; golang/go#75804,
## fixed in Go 1.27), and a count has no deadline to race. FUZZTIME=30s still works for a
## longer hunt by hand.
## Every decoder of bytes from the network has one: client frames (gateway), the send API body
## and Idempotency-Key (uplink), tokens (auth), room ids (protocol), the Go client's frame decoder
## and the load generator's frame scanner.
FUZZTIME ?= 20000x
FUZZERS := ./internal/gateway:FuzzParseClientFrame ./internal/uplink:FuzzDecodeSend \
	./internal/uplink:FuzzIdempotencyKey ./internal/uplink:FuzzServerBatch ./internal/auth:FuzzVerify ./internal/protocol:FuzzParseRoom \
	./client:FuzzDecodeFrame ./internal/bench:FuzzScanFrame ./internal/moderation:FuzzWordFilter
fuzz:
	@set -e; for f in $(FUZZERS); do \
		pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## check: gofmt and go vet
check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## deps: Chromium for the browser tests (Debian package), installed when missing
deps:
	bash scripts/ensure-chromium.sh

## bench: every benchmark, with allocations
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## run: the whole system on http://localhost:8080
run:
	$(GO) run ./cmd/liveroom serve
