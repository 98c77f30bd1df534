# cimstream: make run (service with a local broker), make test (everything, against real Kafka).
GO          ?= go
BIN         := bin/cimstream
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/cimstream/cimstream/internal/service.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TOOLS       := $(CURDIR)/.cache/bin

.PHONY: build run run-kafka test chaos chaos-cluster lint fuzz bench kafka-up kafka-down deps manifests clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cimstream

# make run: against KAFKA_BROKERS when set, else `cimstream dev` (in-process broker, no Java or Docker).
run: build
	@scripts/run.sh

# make run-kafka: against a local Apache Kafka on 127.0.0.1:9092 (Java 17 and Maven).
run-kafka: build
	@scripts/run.sh kafka

test:
	@scripts/test.sh

# The long variants of the fault tests (broker stopped, instances killed, hostile flood, SIGTERM).
chaos:
	@scripts/test.sh chaos

# Broker faults on three-node clusters (about 6 minutes); .ci/run runs it after make test.
chaos-cluster:
	@scripts/test.sh chaos-cluster

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.cache/*')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install $(STATICCHECK)
	$(TOOLS)/staticcheck ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeValidate$$' -fuzztime $${FUZZTIME:-2m} ./pkg/cim

bench:
	@scripts/bench.sh

kafka-up:
	@scripts/kafka.sh up

kafka-down:
	@scripts/kafka.sh down

deps:
	@scripts/deps.sh

# Renders deployments/kubernetes/cimstream.yaml from the Helm chart (a test fails when they differ).
manifests: deps
	$(GO) test ./deployments -run '^TestPlainManifestsAreRendered$$' -update

clean:
	rm -rf bin .cache/bin
