# raftkms build targets. `make test` is what CI runs (see .ci/run).
GO ?= go
PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: all build test vet proto proto-check fmt

all: build

build:
	$(GO) build ./...

test:
	$(GO) test ./...

vet:
	$(GO) vet ./...

# Regenerate the committed Go code from the .proto files. Needs protoc from
# Debian's protobuf-compiler; the Go plugins are pinned as tool dependencies
# in go.mod, so every machine generates the same bytes.
proto:
	$(GO) build -o .bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o .bin/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I . \
		--plugin=protoc-gen-go=.bin/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=.bin/protoc-gen-go-grpc \
		--go_out=. --go_opt=module=github.com/raftkms/raftkms \
		--go-grpc_out=. --go-grpc_opt=module=github.com/raftkms/raftkms \
		$(PROTO_FILES)

# Fails when the committed generated code differs from what `make proto` makes.
proto-check: proto
	git diff --exit-code -- proto

fmt:
	gofmt -w $$(git ls-files '*.go')

# ---- Containers (docs/containers.md) ----------------------------------------
# A three-node cluster in Docker from a FROM scratch image: no base image is
# pulled, the static binaries are built here. `docker compose` (v2) is used
# when present, else docker-compose (v1).
DOCKER ?= docker
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)
COMPOSE_FILES ?= -f docker-compose.yml
IMAGE ?= raftkms:dev
# Compose project name: containers are raftkms_kms1_1 (v1) or raftkms-kms1-1.
PROJECT ?= raftkms
SECRETS_DIR ?= secrets
ROOT_KEY ?= $(SECRETS_DIR)/root.key
CERTS ?= $(SECRETS_DIR)/certs
CLUSTER_WAIT ?= 120
# Compose reads these (see the top of docker-compose.yml).
COMPOSE_ENV = KMS_IMAGE=$(IMAGE) KMS_ROOT_KEY=$(ROOT_KEY) KMS_CERTS=$(CERTS)

.PHONY: image secrets cluster cluster-down

# Static binaries into .bin/image/, then an image from them (the Dockerfile
# says which context it expects).
image:
	rm -rf .bin/image
	mkdir -p .bin/image/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o .bin/image/ ./cmd/kmsd ./cmd/kmsctl
	$(DOCKER) build -t $(IMAGE) .

# The cluster root key and TLS files, each made once: a new root key would
# leave existing volumes unreadable, so existing files are never replaced.
# The secrets directory is 0700. The root key and the node keys are 0644 so
# that the unprivileged user in the containers can read their bind mounts;
# the CA key and the client keys stay 0600 (see docs/containers.md).
secrets: $(ROOT_KEY) $(CERTS)/ca.pem

$(ROOT_KEY):
	mkdir -p $(SECRETS_DIR) $(dir $@)
	chmod 700 $(SECRETS_DIR)
	$(GO) run ./cmd/kmsd gen-root-key > $@.tmp || { rm -f $@.tmp; exit 1; }
	chmod 644 $@.tmp
	mv $@.tmp $@

$(CERTS)/ca.pem:
	mkdir -p $(SECRETS_DIR)
	chmod 700 $(SECRETS_DIR)
	$(GO) run ./cmd/kmsd gen-certs --out $(CERTS) --nodes kms1,kms2,kms3 --clients admin,app
	chmod 644 $(CERTS)/kms1-key.pem $(CERTS)/kms2-key.pem $(CERTS)/kms3-key.pem

# Build, then start (or update) the cluster and wait until every node is
# healthy. Lower the rotation and deletion floors for a demo with
# COMPOSE_FILES='-f docker-compose.yml -f docker-compose.test.yml'.
cluster: image secrets
	$(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) up -d $(if $(filter compose,$(COMPOSE)),--wait)
	@deadline=$$(( $$(date +%s) + $(CLUSTER_WAIT) )); \
	for c in $$($(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) ps -q); do \
	  until [ "$$($(DOCKER) inspect -f '{{.State.Health.Status}}' $$c)" = healthy ]; do \
	    if [ $$(date +%s) -ge $$deadline ]; then \
	      echo "cluster not healthy after $(CLUSTER_WAIT)s:"; $(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) ps; exit 1; \
	    fi; \
	    sleep 1; \
	  done; \
	done
	@eps=""; for n in 1 2 3; do \
	  ep=$$($(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) port kms$$n 700$$n 2>/dev/null | tail -n 1); \
	  eps="$$eps$${eps:+,}$${ep:-127.0.0.1:700$$n}"; \
	done; \
	echo "cluster healthy; its gRPC endpoints on this host: $$eps"; \
	echo "  kmsctl --endpoints $$eps --ca $(CERTS)/ca.pem --cert $(CERTS)/admin.pem --key $(CERTS)/admin-key.pem cluster status"

# Stops and removes the containers and network; the volumes (the keys!) stay.
# `docker compose -p raftkms down -v` deletes them too.
cluster-down:
	$(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) down --remove-orphans
