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
