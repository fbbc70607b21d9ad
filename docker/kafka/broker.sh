#!/bin/bash
# The Kafka broker's entrypoint (user appuser): bin/stack's kafka_up. Fills the passwords into the configuration
# (bash substitution: no password on a command line), formats the storage once with the admin's SCRAM credentials
# (the broker's own inter-broker login; the kafka-setup service adds the other users and the ACLs), then runs Kafka.
set -euo pipefail
dir=/etc/kafka/project
conf=$(</opt/project/kafka/server.properties)
conf=${conf//@KAFKA_ADMIN_PASSWORD@/$KAFKA_ADMIN_PASSWORD}
conf=${conf//@KAFKA_CONTROLLER_PASSWORD@/$KAFKA_CONTROLLER_PASSWORD}
rm -f "$dir/server.properties" "$dir/admin.properties"
(umask 077
  printf '%s\n' "$conf" >"$dir/server.properties"
  # The health check's login (kafka-broker-api-versions.sh --command-config).
  printf '%s\n' security.protocol=SASL_PLAINTEXT sasl.mechanism=SCRAM-SHA-512 \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";" \
    >"$dir/admin.properties")

if [[ ! -f /var/lib/kafka/data/meta.properties ]]; then
  echo "kafka: formatting the storage (KRaft)"
  cluster_id=$(/opt/kafka/bin/kafka-storage.sh random-uuid | tail -1)
  /opt/kafka/bin/kafka-storage.sh format -t "$cluster_id" -c "$dir/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$dir/server.properties"
