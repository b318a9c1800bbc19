# callverify's gateway, with baresip in the same image for the softphone of
# docker-compose.yml. Build: docker build -t callverify .
FROM rust:1.95-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p callverify \
    && cp target/release/callverify /usr/local/bin/callverify

FROM debian:trixie-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates baresip-core \
    && rm -rf /var/lib/apt/lists/* \
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
