#!/bin/sh
# infra/mosquitto/mosquitto.conf for the container, at image build time (it holds no secret): the same broker, with
# its files at the image's paths, listening on the container's network (the native stack binds loopback), logging to
# stdout (`docker compose logs`). Fails if a placeholder or a loopback listener is left. The TLS listener (8883, the
# native stack's development certificate) is left out: the image has no certificate.
set -eu
conf=$(sed \
  -e '/^listener 8883 /,/^keyfile /d' \
  -e 's:^listener 1883 127\.0\.0\.1$:listener 1883:' \
  -e 's:@STACK@/mosquitto/passwd:/mosquitto/auth/passwd:' \
  -e 's:@STACK@/mosquitto/acl:/mosquitto/config/acl:' \
  -e 's:@STACK@/mosquitto/identity-guard\.so:/usr/lib/mosquitto/identity-guard.so:' \
  -e 's:@STACK@/mosquitto/data/:/mosquitto/data/:' \
  -e 's:^log_dest file .*:log_dest stdout:' \
  "$1")
if printf '%s\n' "$conf" | grep -v '^#' | grep -q -e '@STACK@' -e '^listener .*127\.0\.0\.1'; then
  echo "render-conf: $1 has a placeholder or listener this script does not know" >&2
  exit 1
fi
printf '%s\n' "$conf"
