# callverify's gateway, with baresip in the same image for the softphone of
# docker-compose.yml. Build: docker build -t callverify .
# The base images are build arguments. docker/podman-build builds this same file with podman
# from local bases made of Debian's packages (no image registry needed): its build base
# already holds a callverify built on the host, so the build stage skips cargo, and its
# runtime base already has the packages below, so nothing is fetched.
ARG BUILD_IMAGE=rust:1.95-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
RUN [ -x /usr/local/bin/callverify ] \
    || (cargo build --release --locked -p callverify \
        && cp target/release/callverify /usr/local/bin/callverify)

FROM ${RUNTIME_IMAGE}
RUN (dpkg -s ca-certificates baresip-core >/dev/null 2>&1 \
        || (apt-get update \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                ca-certificates baresip-core \
            && rm -rf /var/lib/apt/lists/*)) \
    && useradd --system --home-dir /var/lib/callverify --create-home callverify
COPY --from=build /usr/local/bin/callverify /usr/local/bin/callverify
COPY prompts /usr/share/callverify/prompts
COPY sip-config /etc/callverify
COPY docker/phone /usr/share/callverify/phone
USER callverify
WORKDIR /var/lib/callverify
EXPOSE 8080/tcp 5060/udp 5060/tcp
ENTRYPOINT ["callverify"]
CMD ["serve", "--config", "/etc/callverify/docker.toml"]
