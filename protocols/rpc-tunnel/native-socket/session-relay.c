// Relaying two sessions into each other (see native-socket.c): a data channel session and the
// plain session of the local connection, past a session's weights. Bytes one reads go to the
// other in the same event, checked and timed by rpc-relay.c; each session is read only while
// the other takes what it sends; one timer per relay keeps the worker's read timeout or the
// coordinator's watchdog. JavaScript hears only a refusal (EVENT_REFUSED), the sessions' ends,
// and the commands' timings when it takes them.
#include <openssl/err.h>
#include <string.h>
#include "session.h"

// A relay stops reading one session while the other has this many bytes waiting for its socket.
#define RELAY_HIGH_WATER (256 * 1024)

static void timer_cb (uv_timer_t *handle);

static size_t waiting_bytes (const session_t *s) {
  return s->pending_end - s->pending_start;
}

// A relay reads a session only while the other session takes what it sends on.
static void relay_update_reading (session_t *s) {
  session_t *peer = s->relay_peer;
  if (peer == NULL) {
    s->reading = 0;
    return;
  }
  session_t *channel = s->relay != NULL ? s : peer;
  s->reading = !channel->relay_refused && !peer->destroyed && !peer->failed && !peer->ending && waiting_bytes(peer) < RELAY_HIGH_WATER;
}

// The data channel session's timer. On a worker, the read timeout: it runs while a request is
// part-way received and read, restarted by each arrival of requests (time spent waiting for
// rpc-server to take bytes is not the coordinator's stall). On a coordinator, the watchdog: it
// runs while llama-server is part-way through a request or waits for an answer, restarted by
// every arrival either way.
static void relay_arm_timer (session_t *channel, session_t *arrived) {
  if (channel->relay_kick) return;
  rpc_relay_t *relay = channel->relay;
  int busy;
  if (channel->relay_mode == RELAY_WORKER) {
    if (arrived != NULL && arrived != channel) return;
    busy = channel->reading && rpc_relay_mid_request(relay);
  } else {
    busy = rpc_relay_mid_request(relay) || rpc_relay_waiting(relay) > 0;
  }
  if (busy && !channel->relay_refused) uv_timer_start(&channel->timer, timer_cb, channel->relay_timeout_ms, 0);
  else uv_timer_stop(&channel->timer);
}

// Stops relaying and tells JavaScript why, on the data channel session; JavaScript closes both.
static void relay_refuse (session_t *channel, int refusal) {
  if (channel->relay_refused || channel->destroyed || channel->failed) return;
  channel->relay_refused = 1;
  uv_timer_stop(&channel->timer);
  channel->reading = 0;
  update_polling(channel);
  if (channel->relay_peer != NULL) {
    channel->relay_peer->reading = 0;
    update_polling(channel->relay_peer);
  }
  napi_handle_scope scope;
  napi_open_handle_scope(channel->env, &scope);
  napi_value value, reason, command, size;
  napi_create_array_with_length(channel->env, 3, &value);
  napi_create_int32(channel->env, refusal, &reason);
  napi_create_int32(channel->env, channel->relay->refused_command, &command);
  napi_create_bigint_uint64(channel->env, channel->relay->refused_size, &size);
  napi_set_element(channel->env, value, 0, reason);
  napi_set_element(channel->env, value, 1, command);
  napi_set_element(channel->env, value, 2, size);
  emit(channel, EVENT_REFUSED, value, NULL);
  napi_close_handle_scope(channel->env, scope);
}

// Relays what `from` read into its plain buffer (decrypted, on the data channel) to the relay's
// other session: requests from the data channel to rpc-server on a worker, and from llama-server
// to the data channel on a coordinator; answers the other way. Returns 0, or -1 after the
// session was refused or failed.
int relay_forward (session_t *from, size_t length) {
  session_t *to = from->relay_peer;
  session_t *channel = from->relay != NULL ? from : to;
  uint64_t now = uv_hrtime();
  int refusal = from->relay_reads_requests ? rpc_relay_requests(channel->relay, from->plain, length, now) : rpc_relay_responses(channel->relay, from->plain, length, now);
  if (refusal != RPC_ACCEPTED) {
    relay_refuse(channel, refusal);
    return -1;
  }
  if (to->ssl != NULL) {
    size_t written = 0;
    ERR_clear_error();
    if (SSL_write_ex(to->ssl, from->plain, length, &written) != 1 || written != length) {
      emit_tls_error(to, "TLS write failed");
      return -1;
    }
    flush(to, 0);
  } else {
    struct iovec part = { .iov_base = from->plain, .iov_len = length };
    // What waited goes first; a failing send is left for that session to meet and report.
    flush(to, 0);
    if (send_plain(to, &part, 1) < 0) {
      emit_error(to, "out of memory for the session's send buffer", "ENOMEM");
      return -1;
    }
  }
  update_polling(to);
  relay_update_reading(from);
  relay_arm_timer(channel, from);
  return 0;
}

// The other session of a relay drained: `s` may read again (and relays what its TLS holds).
void relay_resume (session_t *s) {
  if (s->destroyed || s->failed) return;
  int was = s->reading;
  relay_update_reading(s);
  update_polling(s);
  if (s->relay != NULL) relay_arm_timer(s, NULL);
  if (s->reading && !was && s->ssl != NULL) process_input(s);
}

static void timer_cb (uv_timer_t *handle) {
  session_t *s = handle->data;
  if (s->destroyed || s->failed || s->relay == NULL) return;
  if (s->relay_kick) {
    s->relay_kick = 0;
    process_input(s);
    if (!s->destroyed && !s->failed) relay_arm_timer(s, NULL);
    return;
  }
  relay_refuse(s, s->relay_mode == RELAY_WORKER ? RPC_IDLE_READ_TIMEOUT : RPC_STALLED);
}

void relay_detach (session_t *s) {
  // The other session has nowhere to send what it reads: it stops, and JavaScript closes it.
  session_t *peer = s->relay_peer;
  if (peer == NULL) return;
  s->relay_peer = NULL;
  peer->relay_peer = NULL;
  if (peer->destroyed || peer->failed) return;
  peer->reading = 0;
  update_polling(peer);
  if (peer->relay != NULL) uv_timer_stop(&peer->timer);
}

// The bytes of a typed array of `type` and `length` elements, or NULL.
static void *get_table (napi_env env, napi_value value, napi_typedarray_type type, size_t length) {
  napi_typedarray_type actual;
  size_t actual_length = 0;
  void *data = NULL;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, value, &actual, &actual_length, &data, &buffer, &offset) != napi_ok) return NULL;
  return actual == type && actual_length == length ? data : NULL;
}

// relay(channel, local, mode, maxMessageBytes, accepted, fixedBytes, withResponse, timeoutMs):
// from the next turn of the loop, relays between a data channel session past its handshake and
// the plain session of the local connection (rpc-server's on a worker, RELAY_WORKER; llama-server's
// on a coordinator, RELAY_COORDINATOR), both still open and neither relayed before. Requests are
// checked against the tables (ggml-rpc.ts's: accepted and withResponse one byte per command,
// fixedBytes a Float64Array with -1 where any size goes) as rpc-relay.c says, and timed by
// `timeoutMs` as relay_arm_timer says; JavaScript then hears only the sessions' ends,
// EVENT_REFUSED, and what relayRecords() takes.
napi_value relay_sessions (napi_env env, napi_callback_info info) {
  napi_value argv[8];
  session_t *channel = session_arguments(env, info, 8, argv);
  void *local_data = NULL;
  int32_t mode = -1;
  double max_message_bytes = 0, timeout_ms = 0;
  uint8_t *accepted = NULL, *with_response = NULL;
  double *fixed_bytes = NULL;
  if (channel == NULL || napi_get_value_external(env, argv[1], &local_data) != napi_ok || local_data == NULL ||
      napi_get_value_int32(env, argv[2], &mode) != napi_ok || (mode != RELAY_WORKER && mode != RELAY_COORDINATOR) ||
      napi_get_value_double(env, argv[3], &max_message_bytes) != napi_ok || max_message_bytes < 1 ||
      (accepted = get_table(env, argv[4], napi_uint8_array, 256)) == NULL || (fixed_bytes = get_table(env, argv[5], napi_float64_array, 256)) == NULL ||
      (with_response = get_table(env, argv[6], napi_uint8_array, 256)) == NULL ||
      napi_get_value_double(env, argv[7], &timeout_ms) != napi_ok || timeout_ms < 1) {
    return throw_error(env, "relay(channel, local, mode, maxMessageBytes, accepted, fixedBytes, withResponse, timeoutMs) needs two sessions, a mode, a cap, three tables of 256 and a timeout");
  }
  session_t *local = local_data;
  if (channel->ssl == NULL || channel->handshaking || local->ssl != NULL) return throw_error(env, "a relay needs a data channel session past its handshake and a plain session");
  if (channel->relayed || local->relayed) return throw_error(env, "a session is relayed once at most");
  if (channel->destroyed || channel->failed || channel->ending || channel->peer_ended || local->destroyed || local->failed || local->ending || local->peer_ended) {
    return throw_error(env, "a relay needs two sessions open both ways");
  }
  rpc_relay_t *relay = calloc(1, sizeof *relay);
  if (relay == NULL) return throw_error(env, "out of memory for a relay");
  relay->max_message_bytes = max_message_bytes >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)max_message_bytes;
  for (int i = 0; i < 256; i++) {
    relay->accepted[i] = accepted[i] != 0;
    relay->fixed_bytes[i] = fixed_bytes[i] < 0 ? -1 : (int64_t)fixed_bytes[i];
    relay->with_response[i] = with_response[i] != 0;
  }
  relay->refuse_unexpected_responses = mode == RELAY_WORKER;
  channel->relay = relay;
  channel->relay_mode = mode;
  channel->relay_timeout_ms = (uint64_t)timeout_ms;
  channel->relay_reads_requests = mode == RELAY_WORKER;
  local->relay_reads_requests = mode == RELAY_COORDINATOR;
  channel->relayed = local->relayed = 1;
  channel->relay_peer = local;
  local->relay_peer = channel;
  relay_update_reading(channel);
  relay_update_reading(local);
  update_polling(channel);
  update_polling(local);
  // What the data channel's TLS already holds is relayed from the loop, not inside this call.
  channel->relay_kick = 1;
  uv_timer_start(&channel->timer, timer_cb, 0, 0);
  return undefined_value(env);
}

// relayRecords(channel): the commands the relay finished since the last call, as a Float64Array
// of RPC_RECORD_FIELDS numbers each (rpc-relay.h), or undefined when there are none.
napi_value relay_records (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = session_arguments(env, info, 1, argv);
  if (s == NULL) return throw_error(env, "relayRecords(channel) needs a session");
  if (s->relay == NULL || s->relay->record_count == 0) return undefined_value(env);
  size_t count = s->relay->record_count * RPC_RECORD_FIELDS;
  void *data = NULL;
  napi_value buffer, result;
  if (napi_create_arraybuffer(env, count * sizeof(double), &data, &buffer) != napi_ok) return throw_error(env, "out of memory for the relay's records");
  memcpy(data, s->relay->records, count * sizeof(double));
  s->relay->record_count = 0;
  napi_create_typedarray(env, napi_float64_array, count, buffer, 0, &result);
  return result;
}
