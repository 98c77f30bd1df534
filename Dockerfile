# Multi-stage build: a static binary on a distroless base, running as a non-root user. Both bases are pinned by
# digest (the tag beside it says what it is; the digest decides which image it is); update them in a reviewed
# commit, for example with `docker buildx imagetools inspect golang:1.26`.
FROM golang:1.26@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/cimstream/cimstream/internal/service.Version=${VERSION}" \
      -o /out/cimstream ./cmd/cimstream

# gcr.io/distroless/static-debian12:nonroot (multi-arch index)
FROM gcr.io/distroless/static-debian12@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cimstream" \
      org.opencontainers.image.description="Carries CIM messages over Kafka between contact-center channel connectors and the CCM" \
      org.opencontainers.image.source="https://github.com/cimstream/cimstream" \
      org.opencontainers.image.url="https://github.com/cimstream/cimstream" \
      org.opencontainers.image.documentation="https://github.com/cimstream/cimstream/blob/main/docs/operations.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/cimstream /usr/local/bin/cimstream
COPY schemas /usr/share/cimstream/schemas
# The distroless nonroot user; numeric, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# The admin server (health, metrics) must listen beyond loopback inside a container.
ENV CIMSTREAM_ADMIN_ADDRESS=0.0.0.0:8080 \
    CIMSTREAM_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cimstream"]
CMD ["run"]
