// ggml-rpc for the native relay: see rpc-relay.h. Pure bookkeeping over the bytes it is shown;
// it never changes, holds back or copies them, so that the relay forwards each arrival whole.
#include "rpc-relay.h"
#include <stdlib.h>
#include <string.h>

// Finished commands kept for JavaScript, which takes them about once a second: beyond this the
// metrics miss some commands rather than let a session's memory grow.
#define RPC_MAX_RECORDS 65536

static uint64_t read_u64_le (const uint8_t *bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; i--) value = (value << 8) | bytes[i];
  return value;
}

// Adds to a header of `size` bytes split across arrivals what `data` holds of it; returns the bytes taken.
static size_t gather (uint8_t *header, int *filled, int size, const uint8_t *data, size_t available) {
  size_t n = (size_t)(size - *filled);
  if (n > available) n = available;
  memcpy(header + *filled, data, n);
  *filled += (int)n;
  return n;
}

static void record (rpc_relay_t *relay, uint8_t command, uint64_t request_bytes, uint64_t response_bytes, uint64_t started_ns, uint64_t request_ended_ns, uint64_t now_ns) {
  if (relay->record_count == relay->record_capacity) {
    if (relay->record_capacity >= RPC_MAX_RECORDS) return;
    size_t capacity = relay->record_capacity == 0 ? 64 : relay->record_capacity * 2;
    double *grown = realloc(relay->records, capacity * RPC_RECORD_FIELDS * sizeof *grown);
    if (grown == NULL) return;
    relay->records = grown;
    relay->record_capacity = capacity;
  }
  double *fields = relay->records + relay->record_count++ * RPC_RECORD_FIELDS;
  fields[0] = command;
  fields[1] = (double)request_bytes;
  fields[2] = (double)response_bytes;
  fields[3] = (double)started_ns / 1e9;
  fields[4] = (double)request_ended_ns / 1e9;
  fields[5] = (double)now_ns / 1e9;
}

// Returns 0, or -1 when memory ran out (the command then goes untimed, its answer unmatched).
static int wait_for_response (rpc_relay_t *relay, uint8_t command, uint64_t payload_bytes, uint64_t started_ns, uint64_t request_ended_ns) {
  if (relay->waiting_count == relay->waiting_capacity) {
    size_t capacity = relay->waiting_capacity == 0 ? 8 : relay->waiting_capacity * 2;
    struct rpc_waiting *grown = malloc(capacity * sizeof *grown);
    if (grown == NULL) return -1;
    for (size_t i = 0; i < relay->waiting_count; i++) grown[i] = relay->waiting[(relay->waiting_start + i) % relay->waiting_capacity];
    free(relay->waiting);
    relay->waiting = grown;
    relay->waiting_start = 0;
    relay->waiting_capacity = capacity;
  }
  relay->waiting[(relay->waiting_start + relay->waiting_count++) % relay->waiting_capacity] = (struct rpc_waiting){ command, payload_bytes, started_ns, request_ended_ns };
  return 0;
}

static void end_request (rpc_relay_t *relay, uint64_t now_ns) {
  if (!relay->with_response[relay->command]) record(relay, relay->command, relay->payload_bytes, 0, relay->started_ns, now_ns, now_ns);
  else wait_for_response(relay, relay->command, relay->payload_bytes, relay->started_ns, now_ns);
}

// The command byte is judged as soon as it arrives, before its size.
static int check_command (rpc_relay_t *relay, uint8_t command) {
  if (relay->accepted[command]) return RPC_ACCEPTED;
  relay->refused_command = command;
  return RPC_REFUSED_COMMAND;
}

static int accept_header (rpc_relay_t *relay, const uint8_t *header, uint64_t now_ns) {
  uint8_t command = header[0];
  uint64_t size = read_u64_le(header + 1);
  relay->refused_command = command;
  relay->refused_size = size;
  if (relay->fixed_bytes[command] >= 0 && size != (uint64_t)relay->fixed_bytes[command]) return RPC_REFUSED_SIZE;
  if (size > relay->max_message_bytes) return RPC_REFUSED_TOO_LARGE;
  relay->command = command;
  relay->payload_bytes = size;
  relay->payload_left = size;
  relay->started_ns = now_ns;
  if (size == 0) end_request(relay, now_ns);
  return RPC_ACCEPTED;
}

int rpc_relay_requests (rpc_relay_t *relay, const uint8_t *data, size_t length, uint64_t now_ns) {
  size_t offset = 0;
  while (offset < length) {
    if (relay->payload_left > 0) {
      uint64_t n = length - offset < relay->payload_left ? length - offset : relay->payload_left;
      offset += (size_t)n;
      relay->payload_left -= n;
      if (relay->payload_left == 0) end_request(relay, now_ns);
      continue;
    }
    int refusal;
    if (relay->header_filled == 0 && length - offset >= RPC_REQUEST_HEADER_BYTES) {
      if ((refusal = check_command(relay, data[offset])) != RPC_ACCEPTED) return refusal;
      if ((refusal = accept_header(relay, data + offset, now_ns)) != RPC_ACCEPTED) return refusal;
      offset += RPC_REQUEST_HEADER_BYTES;
      continue;
    }
    if (relay->header_filled == 0 && (refusal = check_command(relay, data[offset])) != RPC_ACCEPTED) return refusal;
    offset += gather(relay->header, &relay->header_filled, RPC_REQUEST_HEADER_BYTES, data + offset, length - offset);
    if (relay->header_filled < RPC_REQUEST_HEADER_BYTES) continue;
    relay->header_filled = 0;
    if ((refusal = accept_header(relay, relay->header, now_ns)) != RPC_ACCEPTED) return refusal;
  }
  return RPC_ACCEPTED;
}

static int end_response (rpc_relay_t *relay, uint64_t now_ns) {
  if (relay->waiting_count == 0) return relay->refuse_unexpected_responses ? RPC_UNEXPECTED_RESPONSE : RPC_ACCEPTED;
  struct rpc_waiting request = relay->waiting[relay->waiting_start];
  relay->waiting_start = (relay->waiting_start + 1) % relay->waiting_capacity;
  relay->waiting_count--;
  record(relay, request.command, request.payload_bytes, relay->response_bytes, request.started_ns, request.request_ended_ns, now_ns);
  return RPC_ACCEPTED;
}

static int start_response (rpc_relay_t *relay, const uint8_t *header, uint64_t now_ns) {
  relay->response_bytes = read_u64_le(header);
  relay->response_left = relay->response_bytes;
  return relay->response_bytes == 0 ? end_response(relay, now_ns) : RPC_ACCEPTED;
}

int rpc_relay_responses (rpc_relay_t *relay, const uint8_t *data, size_t length, uint64_t now_ns) {
  size_t offset = 0;
  int result;
  while (offset < length) {
    if (relay->response_left > 0) {
      uint64_t n = length - offset < relay->response_left ? length - offset : relay->response_left;
      offset += (size_t)n;
      relay->response_left -= n;
      if (relay->response_left == 0 && (result = end_response(relay, now_ns)) != RPC_ACCEPTED) return result;
      continue;
    }
    if (relay->response_header_filled == 0 && length - offset >= RPC_RESPONSE_HEADER_BYTES) {
      if ((result = start_response(relay, data + offset, now_ns)) != RPC_ACCEPTED) return result;
      offset += RPC_RESPONSE_HEADER_BYTES;
      continue;
    }
    offset += gather(relay->response_header, &relay->response_header_filled, RPC_RESPONSE_HEADER_BYTES, data + offset, length - offset);
    if (relay->response_header_filled < RPC_RESPONSE_HEADER_BYTES) continue;
    relay->response_header_filled = 0;
    if ((result = start_response(relay, relay->response_header, now_ns)) != RPC_ACCEPTED) return result;
  }
  return RPC_ACCEPTED;
}

int rpc_relay_mid_request (const rpc_relay_t *relay) {
  return relay->header_filled > 0 || relay->payload_left > 0;
}

size_t rpc_relay_waiting (const rpc_relay_t *relay) {
  return relay->waiting_count;
}

void rpc_relay_free (rpc_relay_t *relay) {
  free(relay->waiting);
  free(relay->records);
  relay->waiting = NULL;
  relay->records = NULL;
}
