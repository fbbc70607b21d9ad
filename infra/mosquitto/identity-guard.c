/*
 * identity-guard: the two rules Mosquitto 2.0.11's password_file + acl_file cannot express (verified on 2.0.11):
 *
 * 1. SUBSCRIBE is refused (SUBACK 0x80) for a filter with a wildcard or a `$share/` group unless the user is a
 *    listed service (plugin_opt_subscribers). acl_file grants every SUBSCRIBE and filters only at delivery, so a
 *    driver joining `$share/bridge/drivers/+/location` was a member of the bridge's group and half of the fleet's
 *    messages went to it and were dropped there (measured: 10 of 20).
 * 2. A client id that looks like a driver id (a UUID) or is a reserved service id (plugin_opt_reserved_ids, e.g.
 *    bridge-0) may be used only by the user of that name, so nobody can take over a phone's or the bridge's session.
 *
 * 3. Revocation: Mosquitto 2.0.11 keeps a connected session after its user left the password file and the broker
 *    reloaded it (SIGHUP; verified), so an admin publishes the revoked usernames, one per line, to
 *    $CONTROL/identity-guard/v1/kick and the plugin disconnects their sessions (the ACL allows that topic to admin).
 *
 * 4. Payload size: a PUBLISH whose payload is over plugin_opt_max_payload bytes (default 262144) is refused
 *    (MOSQ_ERR_ACL_DENIED: an MQTT 5 client gets PUBACK 0x87, a 3.1.1 client a plain PUBACK, as for any refused
 *    publish), logged as a WARNING naming client id, username, topic and size, and counted: the running count since
 *    the broker started is published, retained, on $SYS/identity-guard/oversized (read by the bridge, which exports
 *    it as a metric). Mosquitto's own message_size_limit is not used for this: it drops the message before any
 *    plugin runs and logs that at debug level only, so an MQTT 3.1.1 phone's message vanished without a trace.
 *    The broker's max_packet_size stays as an outer bound (the connection is closed beyond it; see mosquitto.conf).
 *
 * 5. Publishers wait for the bridges after a start: Mosquitto 2.0.11 restores a persistent session's queued messages
 *    from its persistence file but not its `$share/` subscriptions (verified: a message published after a restart
 *    is queued for a plain persistent subscription, and dropped for a shared one until it subscribes again). A phone
 *    reconnecting first would get PUBACKs for messages nobody is subscribed to, which the broker then drops. So for
 *    plugin_opt_hold_publishers_seconds after the broker starts, a client that is not a service (subscribers and
 *    reserved ids) has its connection closed at CONNECT, without a CONNACK, until a service has subscribed again;
 *    the phone retries as after any network loss, its outbox intact. The hold ends at the first service SUBSCRIBE, or after that many seconds (no bridge deployed).
 *
 * Everything else defers to password_file / acl_file (which run after this plugin), so topic rights stay in the ACL.
 * Dynamic security (also in 2.0.11) was not used: its ACLs have no %u patterns (one role per driver) and it rewrites
 * its whole JSON file on every command, which does not scale to 100,000 drivers.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define CONTROL_TOPIC "$CONTROL/identity-guard/v1/kick"
#define OVERSIZED_TOPIC "$SYS/identity-guard/oversized"
#define DEFAULT_MAX_PAYLOAD 262144L

static mosquitto_plugin_id_t *plugin_id;
static char *subscribers; /* " a b c " : space-padded for whole-word search */
static char *reserved_ids;
static long max_payload = DEFAULT_MAX_PAYLOAD; /* 0 = no limit */
/* Refused oversized messages since the broker started. The plugin is initialised once per broker process (a SIGHUP
 * reload does not call mosquitto_plugin_init again), so this is the broker's count since its start. */
static unsigned long long oversized_count;
/* Rule 5: until when publishers are held (0 = not holding), and how many were refused meanwhile. */
static time_t hold_until;
static unsigned long held_count;

static void stop_holding(const char *why)
{
	if(!hold_until) return;
	hold_until = 0;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity-guard: publishers admitted (%s); %lu connections held back before",
			why, held_count);
}

static char *padded_list(const char *value)
{
	size_t n = strlen(value);
	char *out = malloc(n + 3);
	if(!out) return NULL;
	out[0] = ' ';
	memcpy(out + 1, value, n);
	out[n + 1] = ' ';
	out[n + 2] = '\0';
	for(char *p = out; *p; p++) if(*p == ',') *p = ' ';
	return out;
}

static bool in_list(const char *list, const char *word)
{
	if(!list || !word) return false;
	size_t n = strlen(word);
	for(const char *p = strstr(list, word); p; p = strstr(p + 1, word)){
		if(p[-1] == ' ' && p[n] == ' ') return true;
	}
	return false;
}

static bool looks_like_uuid(const char *s)
{
	if(strlen(s) != 36) return false;
	for(int i = 0; i < 36; i++){
		if(i == 8 || i == 13 || i == 18 || i == 23){
			if(s[i] != '-') return false;
		}else if(!isxdigit((unsigned char)s[i])){
			return false;
		}
	}
	return true;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	(void)event; (void)userdata;
	if(id && (looks_like_uuid(id) || in_list(reserved_ids, id))){
		if(!ed->username || strcmp(ed->username, id) != 0){
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity-guard: client id %s refused to user %s", id,
					ed->username ? ed->username : "(none)");
			return MOSQ_ERR_AUTH;
		}
	}
	/* And the other way round: a driver (a UUID user) connects only under its own id, so a leaked password cannot
	 * hold a second session beside the phone's, which a new sign-in would neither take over nor kick. */
	if(ed->username && looks_like_uuid(ed->username) && (!id || strcmp(ed->username, id) != 0)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity-guard: driver %s refused under client id %s", ed->username,
				id ? id : "(none)");
		return MOSQ_ERR_AUTH;
	}
	const char *user = ed->username ? ed->username : "";
	if(hold_until && !in_list(subscribers, user) && !in_list(reserved_ids, user)){
		if(time(NULL) >= hold_until){
			stop_holding("no service subscribed within plugin_opt_hold_publishers_seconds");
		}else{
			if(held_count++ == 0){
				mosquitto_log_printf(MOSQ_LOG_NOTICE,
						"identity-guard: holding publishers back until a service subscribes again (restart)");
			}
			/* Not MOSQ_ERR_AUTH: a "not authorized" CONNACK makes clients give up (mqtt.js does). Any other error
			 * closes the connection without a CONNACK, which clients treat as the broker being unavailable and
			 * retry with their usual backoff. */
			return MOSQ_ERR_CONN_REFUSED;
		}
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

/* The running count, retained, so a subscriber that comes later (a restarted bridge) reads the current value. */
static void publish_oversized_count(void)
{
	char payload[24];
	int n = snprintf(payload, sizeof(payload), "%llu", oversized_count);
	int rc = mosquitto_broker_publish_copy(NULL, OVERSIZED_TOPIC, n, payload, 0, true, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_ERR, "identity-guard: publishing %s failed (%d)", OVERSIZED_TOPIC, rc);
	}
}

static int refuse_oversized(const struct mosquitto_evt_acl_check *ed)
{
	const char *id = mosquitto_client_id(ed->client);
	const char *username = mosquitto_client_username(ed->client);
	oversized_count++;
	/* Mosquitto's log file carries no level, so the line says it, as the broker's own warnings do ("Warning: ..."). */
	mosquitto_log_printf(MOSQ_LOG_WARNING,
			"Warning: identity-guard: oversized message refused: client %s, user %s, topic %s, %ld bytes (limit %ld); %llu refused since start",
			id ? id : "(none)", username ? username : "(none)", ed->topic, ed->payloadlen, max_payload, oversized_count);
	publish_oversized_count();
	return MOSQ_ERR_ACL_DENIED;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	(void)event; (void)userdata;
	/* WRITE: a client's PUBLISH (and its will, when the broker is about to send it). */
	if(ed->access == MOSQ_ACL_WRITE){
		if(max_payload > 0 && ed->payloadlen > max_payload) return refuse_oversized(ed);
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	if(ed->access != MOSQ_ACL_SUBSCRIBE) return MOSQ_ERR_PLUGIN_DEFER;
	if(hold_until && in_list(subscribers, mosquitto_client_username(ed->client))) stop_holding("a service subscribed");
	bool wide = !strncmp(ed->topic, "$share/", 7) || strchr(ed->topic, '+') || strchr(ed->topic, '#');
	if(!wide) return MOSQ_ERR_PLUGIN_DEFER;
	const char *username = mosquitto_client_username(ed->client);
	if(in_list(subscribers, username)) return MOSQ_ERR_PLUGIN_DEFER;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity-guard: subscription %s refused to %s", ed->topic,
			username ? username : "(none)");
	return MOSQ_ERR_ACL_DENIED;
}

static int on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	(void)event; (void)userdata;
	char *list = malloc(ed->payloadlen + 1);
	if(!list) return MOSQ_ERR_NOMEM;
	memcpy(list, ed->payload, ed->payloadlen);
	list[ed->payloadlen] = '\0';
	int kicked = 0;
	for(char *save = NULL, *name = strtok_r(list, "\n ", &save); name; name = strtok_r(NULL, "\n ", &save)){
		mosquitto_kick_client_by_username(name, false);
		kicked++;
	}
	free(list);
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity-guard: kicked the sessions of %d revoked users", kicked);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	plugin_id = identifier;
	subscribers = padded_list("");
	reserved_ids = padded_list("");
	for(int i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "subscribers")){
			free(subscribers);
			subscribers = padded_list(opts[i].value);
		}else if(!strcmp(opts[i].key, "reserved_ids")){
			free(reserved_ids);
			reserved_ids = padded_list(opts[i].value);
		}else if(!strcmp(opts[i].key, "max_payload")){
			char *end = NULL;
			long value = strtol(opts[i].value, &end, 10);
			if(!*opts[i].value || *end || value < 0){
				mosquitto_log_printf(MOSQ_LOG_ERR, "identity-guard: plugin_opt_max_payload %s is not a byte count",
						opts[i].value);
				return MOSQ_ERR_INVAL;
			}
			max_payload = value;
		}else if(!strcmp(opts[i].key, "hold_publishers_seconds")){
			char *end = NULL;
			long value = strtol(opts[i].value, &end, 10);
			if(!*opts[i].value || *end || value < 0 || value > 3600){
				mosquitto_log_printf(MOSQ_LOG_ERR, "identity-guard: plugin_opt_hold_publishers_seconds %s is not 0-3600",
						opts[i].value);
				return MOSQ_ERR_INVAL;
			}
			hold_until = value ? time(NULL) + value : 0;
		}
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity-guard: payloads over %ld bytes are refused", max_payload);
	/* The counter exists (0) from the start, so a reader can tell "none refused" from "not published". */
	publish_oversized_count();
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc) return rc;
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_CONTROL, on_control, CONTROL_TOPIC, NULL);
	if(rc) return rc;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data; (void)opts; (void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_CONTROL, on_control, CONTROL_TOPIC);
	free(subscribers);
	free(reserved_ids);
	return MOSQ_ERR_SUCCESS;
}
