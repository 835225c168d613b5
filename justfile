# media-service tasks. `just --list` shows them.

# Run the service in dev mode (no configuration; demo page on :8080).
run:
    go run ./cmd/media-service

# The README's test command: vet and the whole suite with the race detector.
test:
    go vet ./...
    go test -race -count=1 -p 1 ./...

# Browser end-to-end tests only (needs Debian's chromium).
e2e:
    go test -race -count=1 -run 'Browser|Chrom' -v ./edge/web/...

# Go benchmarks for the hot paths, with allocations, on 1 and 2 CPUs.
bench:
    go test -run '^$' -bench . -benchmem -cpu 1,2 ./edge/... ./turn/... ./cmd/...

# Load test against a local dev instance started by the recipe.
load *ARGS:
    go build -o .bin/media-service ./cmd/media-service
    go run ./cmd/mediaload -spawn .bin/media-service {{ARGS}}

# Long adversarial and churn runs.
soak:
    MEDIA_SOAK=1 go test -race -count=1 -p 1 -timeout 60m -run 'Soak|Churn' -v ./...

# 1,000 churn cycles whose participants each flap their network twice
# (signaling reset, resume, ICE restarts), against the real service.
soak-flaps:
    MEDIA_SOAK=1 go test -count=1 -timeout 90m -run 'TestFlapSoak' -v ./cmd/media-service/

# Formatting and static checks (staticcheck pinned as in .ci/run).
lint:
    test -z "$(gofmt -l $(git ls-files '*.go'))"
    go vet ./...
    GOBIN="$PWD/.bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
    .bin/staticcheck ./...

# The container image.
docker:
    docker build -t media-service .
