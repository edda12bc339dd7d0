// What the native relay knows of ggml-rpc (rpc-relay.c): the framing of both directions of a
// session, the checks made of each request, and the timing of each command. The protocol's
// tables come from JavaScript (ggml-rpc.ts stays the one place that defines them), and the
// checks are those of request-validator.ts for a session past its HELLO.
#ifndef LLMESH_RPC_RELAY_H
#define LLMESH_RPC_RELAY_H

#include <stddef.h>
#include <stdint.h>

// command u8 | payload size u64 LE
#define RPC_REQUEST_HEADER_BYTES 9
// payload size u64 LE
#define RPC_RESPONSE_HEADER_BYTES 8

// Why the relay refused a session (JavaScript turns each into its RpcTunnelError).
enum rpc_refusal {
  RPC_ACCEPTED = 0,
  RPC_REFUSED_COMMAND = 1,      // a command this state does not accept (refused_command)
  RPC_REFUSED_SIZE = 2,         // a fixed-size request of another size (refused_command, refused_size)
  RPC_REFUSED_TOO_LARGE = 3,    // a payload over the cap (refused_command, refused_size)
  RPC_UNEXPECTED_RESPONSE = 4,  // rpc-server answered when no request waited for an answer
  RPC_IDLE_READ_TIMEOUT = 5,    // worker: the coordinator stopped part-way through a request (the caller's timer)
  RPC_STALLED = 6               // coordinator: nothing moved while llama-server waited for the worker (the caller's timer)
};

// One finished command: command, request payload bytes, response payload bytes, and in seconds
// of one monotonic clock, when its header arrived, when its request ended, and when it ended
// (its request's end, or its response's for commands that have one).
#define RPC_RECORD_FIELDS 6

typedef struct {
  // The protocol, from JavaScript.
  uint64_t max_message_bytes;
  uint8_t accepted[256];      // commands accepted from here on
  int64_t fixed_bytes[256];   // a request's one payload size, -1 where any size goes
  uint8_t with_response[256]; // commands that rpc-server answers
  int refuse_unexpected_responses; // a worker's rpc-server answering nothing asked is refused; a coordinator only stops timing

  // Requests, coordinator -> rpc-server.
  uint8_t header[RPC_REQUEST_HEADER_BYTES];
  int header_filled;
  uint8_t command;
  uint64_t payload_bytes;
  uint64_t payload_left;
  uint64_t started_ns;

  // Responses, rpc-server -> coordinator.
  uint8_t response_header[RPC_RESPONSE_HEADER_BYTES];
  int response_header_filled;
  uint64_t response_bytes;
  uint64_t response_left;

  // Requests waiting for their answer, first in first out (ggml-rpc answers in order).
  struct rpc_waiting { uint8_t command; uint64_t payload_bytes; uint64_t started_ns, request_ended_ns; } *waiting;
  size_t waiting_start, waiting_count, waiting_capacity;

  // Finished commands not yet taken by JavaScript, RPC_RECORD_FIELDS doubles each.
  double *records;
  size_t record_count, record_capacity;

  // What was refused (RPC_REFUSED_*).
  uint8_t refused_command;
  uint64_t refused_size;
} rpc_relay_t;

// Checks and follows the next `length` bytes of requests; RPC_ACCEPTED, or why the session is refused.
int rpc_relay_requests (rpc_relay_t *relay, const uint8_t *data, size_t length, uint64_t now_ns);

// Follows the next `length` bytes of responses; RPC_ACCEPTED or RPC_UNEXPECTED_RESPONSE.
int rpc_relay_responses (rpc_relay_t *relay, const uint8_t *data, size_t length, uint64_t now_ns);

// True while a request is part-way received: a quiet client is then stalling, not idle.
int rpc_relay_mid_request (const rpc_relay_t *relay);

// Requests whose answer has not ended yet.
size_t rpc_relay_waiting (const rpc_relay_t *relay);

// Frees what the relay allocated (not the relay itself).
void rpc_relay_free (rpc_relay_t *relay);

#endif
