# Multi-stage build: a static binary on a distroless base, running as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/cimstream/cimstream/internal/service.Version=${VERSION}" \
      -o /out/cimstream ./cmd/cimstream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cimstream /usr/local/bin/cimstream
COPY schemas /usr/share/cimstream/schemas
USER 65532:65532
# The admin server (health, metrics) must listen beyond loopback inside a container.
ENV CIMSTREAM_ADMIN_ADDRESS=0.0.0.0:8080 \
    CIMSTREAM_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cimstream"]
CMD ["run"]
