# mailflow's container image: a static binary on distroless (CA certificates
# and time zones, no shell), run as the image's user nonroot (65532), with its
# state in the volume /var/lib/mailflow and its config at
# /etc/mailflow/mailflow.toml (dist/mailflow.toml until you mount yours).
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t mailflow .
#   docker run -d --name mailflow -v mailflow-state:/var/lib/mailflow \
#     -v "$PWD/mailflow.toml:/etc/mailflow/mailflow.toml:ro" mailflow
#   docker kill -s HUP mailflow     # reloads the config
#   docker exec mailflow mailflow quarantine list -c /etc/mailflow/mailflow.toml
#
# A named volume starts as the image's /var/lib/mailflow, owned by 65532; a
# directory mounted there instead must be writable by uid 65532.

# Go 1.26.8 or later: go.mod's go line.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version "mailflow version" prints: .git is not sent to the build, so
# Go cannot stamp the commit; give it here.
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w${VERSION:+ -X main.version=$VERSION}" \
        -o /out/usr/bin/mailflow ./cmd/mailflow \
 && /out/usr/bin/mailflow check -c dist/mailflow.toml \
 && mkdir -p /out/var/lib/mailflow/inbox/new /out/var/lib/mailflow/inbox/cur /out/var/lib/mailflow/inbox/tmp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/usr/bin/mailflow /usr/bin/mailflow
COPY dist/mailflow.toml /etc/mailflow/mailflow.toml
COPY --from=build --chown=65532:65532 /out/var/lib/mailflow /var/lib/mailflow
VOLUME /var/lib/mailflow
USER 65532:65532
ENTRYPOINT ["/usr/bin/mailflow"]
CMD ["run", "-c", "/etc/mailflow/mailflow.toml"]
