# syntax=docker/dockerfile:1
# Build: a static binary (no cgo) so the final image needs no libc. The Go
# version is go.mod's, so the build does not fetch another toolchain.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
    -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/media-service ./cmd/media-service

# Run: distroless static, non-root. CA certificates are included for OTLP
# over HTTPS.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/media-service /media-service
USER nonroot:nonroot
# HTTP signaling, ICE (UDP mux and TCP fallback), TURN, ops (private).
EXPOSE 8080/tcp 7882/udp 7881/tcp 3478/udp 3478/tcp 9091/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/media-service"]
CMD ["serve"]
