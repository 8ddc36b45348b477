# raftkms node image: static binaries on an empty base.
#
# No base image is pulled, so this builds with no registry. The binaries are
# built on the host first (CGO_ENABLED=0, so they need no libc); `make image`
# does that and lays out the build context this file expects:
#
#   .bin/image/kmsd     static kmsd
#   .bin/image/kmsctl   static kmsctl
#   .bin/image/data/    an empty directory, the future /data
#
# The build context is the repository root; .dockerignore lets only
# .bin/image/ in, so the context stays a few megabytes.
FROM scratch

# kmsd runs as this unprivileged user. A named volume mounted on /data for
# the first time takes the ownership of the image's /data, so the node can
# write its Raft log there without running as root.
ARG UID=65532

COPY .bin/image/kmsd .bin/image/kmsctl /
COPY --chown=${UID}:${UID} .bin/image/data /data

USER ${UID}:${UID}
WORKDIR /data

ENV RAFTKMS_DATA_DIR=/data \
    RAFTKMS_ROOT_KEY_FILE=/run/secrets/root_key

# For a plain `docker run`: `kmsd health` reads its --grpc-addr from
# RAFTKMS_GRPC_ADDR (a wildcard such as 0.0.0.0:7001 reaches the node's own
# listener on Linux). docker-compose.yml gives each service its own check.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["/kmsd", "health"]

ENTRYPOINT ["/kmsd"]
CMD ["serve"]
