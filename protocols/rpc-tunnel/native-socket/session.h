// What the addon's C files share (native-socket.c: sessions; session-relay.c: relaying two
// sessions into each other): a session, the events it reports, and the functions of each file
// the other calls. Internal: the library is built with hidden visibility, so that none of these
// names can meet a symbol of the node process.
#ifndef LLMESH_NATIVE_SOCKET_SESSION_H
#define LLMESH_NATIVE_SOCKET_SESSION_H

#include <node_api.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "rpc-relay.h"

// The most bytes taken from the socket, and handed to JavaScript, per event.
#define READ_BYTES (256 * 1024)

// Which end of the tunnel a relay runs on (relay()'s mode).
enum relay_mode {
  RELAY_WORKER = 0,      // the data channel brings requests for rpc-server, checked; answers go back
  RELAY_COORDINATOR = 1  // llama-server's connection brings requests for the data channel; a silent worker stalls it
};

// What a session tells JavaScript: on_event(kind, value, code).
enum event_kind {
  EVENT_HANDSHAKE = 0, // value: the peer certificate's SHA-256 (DER), lower-case hex
  EVENT_DATA = 1,      // value: a Buffer of plaintext
  EVENT_END = 2,       // the peer closed its sending half
  EVENT_DRAINED = 3,   // everything written has reached the kernel
  EVENT_ERROR = 4,     // value: message, code: errno name (ECONNRESET, ...) or "ERR_TLS"
  EVENT_FINISHED = 5,  // after end(): close_notify and FIN are sent
  EVENT_REFUSED = 6    // relaying, on the data channel session: value [refusal, command, size] (rpc-relay.h), nothing more is relayed
};

typedef struct session session_t;

struct session {
  napi_env env;
  uv_poll_t poll;
  uv_timer_t timer; // relaying, on the data channel session: the read timeout, and the first read
  int fd;
  SSL *ssl;         // NULL for a plain session
  BIO *network_in;  // ciphertext from the socket, for SSL to read
  BIO *network_out; // ciphertext from SSL, for the socket
  unsigned char *pending; // bytes for the socket that it has not taken yet (TLS: ciphertext from network_out)
  size_t pending_start, pending_end, pending_capacity;
  unsigned char *plain; // READ_BYTES, for what is handed to JavaScript
  napi_ref on_event;
  napi_async_context async;
  int handshaking;
  int reading;     // JavaScript takes data
  int eof;         // the socket reached EOF: nothing more arrives
  int peer_ended;  // close_notify, or EOF with everything before it handed on: EVENT_END sent
  int ending;      // end() called: FIN once pending is written
  int finished;    // FIN sent
  int failed;      // EVENT_ERROR sent: nothing more happens but destroy()
  int destroyed;
  int handle_closed; // uv_close finished: the socket is closed
  int finalized;     // JavaScript's handle to the session was collected
  int polling;       // the events uv_poll watches
  int open_handles;  // poll and timer, until uv_close has finished with both
  session_t *relay_peer;  // relaying: the other session, NULL once either is destroyed
  rpc_relay_t *relay;     // on the data channel session of a relay (kept until freed, for its records)
  int relay_reads_requests; // relaying: what this session reads are requests (else answers)
  int relay_mode;          // on the data channel session of a relay: RELAY_WORKER or RELAY_COORDINATOR
  uint64_t relay_timeout_ms; // the worker's read timeout, or the coordinator's watchdog
  int relayed;            // handed to a relay: JavaScript no longer decides when it reads
  int relay_refused;      // EVENT_REFUSED sent: nothing more is relayed
  int relay_kick;         // the timer is due to read what arrived before the relay started
};

// native-socket.c
napi_value undefined_value (napi_env env);
napi_value throw_error (napi_env env, const char *message);
// Calls JavaScript's on_event from the event loop.
void emit (session_t *s, int kind, napi_value value, const char *code);
// Reports a failure once (EVENT_ERROR); nothing more happens but destroy().
void emit_error (session_t *s, const char *message, const char *code);
void emit_tls_error (session_t *s, const char *fallback);
void update_polling (session_t *s);
// Takes SSL's output and writes what the socket takes; only from the loop (from_loop) does it emit.
int flush (session_t *s, int from_loop);
// Plain session: sends `parts` in one call where nothing waits, and queues the rest.
int send_plain (session_t *s, struct iovec *parts, int count);
// Runs the handshake and decrypts what arrived, handing it on while the session reads.
void process_input (session_t *s);
// The session the first of `count` arguments is, or NULL.
session_t *session_arguments (napi_env env, napi_callback_info info, size_t count, napi_value *argv);

// session-relay.c
// Relays what `from` read into its plain buffer to the other session; 0, or -1 after a refusal or failure.
int relay_forward (session_t *from, size_t length);
// The other session of a relay drained: `s` may read again.
void relay_resume (session_t *s);
// `s` is destroyed: the other session of its relay stops reading.
void relay_detach (session_t *s);
napi_value relay_sessions (napi_env env, napi_callback_info info);
napi_value relay_records (napi_env env, napi_callback_info info);

#endif
