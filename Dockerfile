# nodewright's container image: `bash scripts/image.sh` (or `docker build -t nodewright .`).
#
# Build stage: the release binary with the default features (the controller included). The
# Debian release of the builder matches the runtime's (bookworm = debian12), so the binary's
# glibc is the one it runs with. The EC2 catalog is embedded in the binary: nothing else is
# copied into the runtime image.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/nodewright /nodewright

# Runtime: distroless with glibc and CA certificates (for EC2, SSM, SQS and the API server),
# no shell, no package manager; user 65532 (nonroot). The chart runs it with a read-only root
# filesystem: the controller writes nothing to disk.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /nodewright /nodewright
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodewright"]
CMD ["controller"]
