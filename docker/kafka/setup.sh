#!/bin/bash
# The one-shot `kafka-setup` service: bin/stack's kafka_security and create_topic. As the admin (SCRAM; a super user
# that exists from the storage format), it upserts the services' SCRAM users from their secrets, makes the ACLs
# exactly infra/kafka/acls.conf (KafkaSecurity.java, the same tool bin/stack runs), and creates the topics.
# Idempotent: run at every `docker compose up`. The tests' users (test-bridge, test-worker) exist in the dev stack only.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
(umask 077
  printf '%s\n' "bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS" security.protocol=SASL_PLAINTEXT sasl.mechanism=SCRAM-SHA-512 \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";" \
    >"$dir/admin.properties")

# KafkaSecurity reads each password from the environment variable named after the `=`, never from argv.
java -Xmx256m "$KAFKA_LOG4J_OPTS" -cp "/opt/kafka/libs/*:/opt/project/kafka/classes" KafkaSecurity \
  "$dir/admin.properties" /opt/project/kafka/acls.conf \
  admin=KAFKA_ADMIN_PASSWORD bridge=KAFKA_BRIDGE_PASSWORD worker=KAFKA_WORKER_PASSWORD api=KAFKA_API_PASSWORD

create_topic() {
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --command-config "$dir/admin.properties" \
    --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1
}
create_topic "${KAFKA_TOPIC:-driver-pos}" 8
create_topic "${KAFKA_DLQ_TOPIC:-driver-pos-dlq}" 2
echo "kafka-setup: users, ACLs and topics ready"
