#!/bin/sh
# infra/kafka/server.properties for the container, at image build time: the same single KRaft node, its client
# listener on the container's network and advertised as kafka:9092 (the compose service), the controller still on
# loopback, data on the image's volume. The passwords' placeholders stay: broker.sh fills them at start. Fails if
# anything else is left to fill or a line it rewrites has changed.
set -eu
# The single node of the dev stack's default (node 1, ports 9092/9093), whichever form the template has: with the
# node's placeholders (@NODE_ID@, @VOTERS@, @CLIENT_PORT@, @CONTROLLER_PORT@, @DATA_DIR@) or with them filled in.
conf=$(sed \
  -e 's|@NODE_ID@|1|g' \
  -e 's|@VOTERS@|1@127.0.0.1:9093|g' \
  -e 's|@CLIENT_PORT@|9092|g' \
  -e 's|@CONTROLLER_PORT@|9093|g' \
  -e 's|@DATA_DIR@|/var/lib/kafka/data|g' \
  -e 's|^log\.dirs=@STACK@/kafka/data$|log.dirs=/var/lib/kafka/data|' \
  "$1" | sed \
  -e 's|^listeners=CLIENT://127\.0\.0\.1:9092,CONTROLLER://127\.0\.0\.1:9093$|listeners=CLIENT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093|' \
  -e 's|^advertised\.listeners=CLIENT://127\.0\.0\.1:9092$|advertised.listeners=CLIENT://kafka:9092|')
body=$(printf '%s\n' "$conf" | grep -v '^#')
if printf '%s\n' "$body" | sed -e 's/@KAFKA_ADMIN_PASSWORD@//g' -e 's/@KAFKA_CONTROLLER_PASSWORD@//g' | grep -q '@[A-Z_]*@'; then
  echo "render-conf: $1 has a placeholder this script does not know" >&2
  exit 1
fi
for wanted in 'node.id=1' 'controller.quorum.voters=1@127.0.0.1:9093' 'listeners=CLIENT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093' \
  'advertised.listeners=CLIENT://kafka:9092' 'log.dirs=/var/lib/kafka/data'; do
  printf '%s\n' "$body" | grep -q -F "$wanted" || { echo "render-conf: no '$wanted' in the result" >&2; exit 1; }
done
printf '%s\n' "$conf"
