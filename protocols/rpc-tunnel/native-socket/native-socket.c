// The tunnel's sockets in native code: a Node-API addon that runs sessions over connected TCP
// sockets on the calling thread's own event loop (a uv_poll_t per socket). A session is either
// TLS 1.3 (the data channel between coordinator and worker), with the OpenSSL that the node
// binary itself carries, or plain (the local connection to llama-server or rpc-server). It
// encrypts, decrypts and moves bytes: who may connect (certificate pinning) stays in
// JavaScript, which gets each arrival as one Buffer of up to READ_BYTES.
//
// Once a session's weights are loaded, JavaScript may hand its two sessions (the data channel's
// and the local connection's: rpc-server's on a worker, llama-server's on a coordinator) to a
// relay (session-relay.c) that carries every decode step without calling JavaScript: it checks
// and times the ggml-rpc requests as the worker bridge and the coordinator's watchdog do
// (rpc-relay.c), and reports only a refusal or stall, the sessions' ends, and the commands'
// timings in batches.
//
// Why: Node's TLS socket hands JavaScript one chunk per 16 KB record, and every Node socket
// costs several stream-machinery layers per read and write. On a small machine that was most
// of the tunnel's cost per decode step, and it capped weight loading (`mesh bench tunnel`).
//
// Built by `mesh setup` with the system's C compiler against the running node's headers
// (node/native-socket.ts); links nothing: napi_*, uv_* and the OpenSSL symbols resolve in the node
// process. Every session lives on one thread, so nothing here locks.
#include <node_api.h>
#include <uv.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include "session.h"

napi_value undefined_value (napi_env env) {
  napi_value value;
  napi_get_undefined(env, &value);
  return value;
}

napi_value throw_error (napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

// OpenSSL's oldest queued error as text (after a failed call), or `fallback`.
static void openssl_error (char *out, size_t size, const char *fallback) {
  unsigned long code = ERR_get_error();
  if (code == 0) snprintf(out, size, "%s", fallback);
  else ERR_error_string_n(code, out, size);
  ERR_clear_error();
}

// Calls JavaScript's on_event from the event loop, with microtasks run after it, as Node does for its own callbacks.
void emit (session_t *s, int kind, napi_value value, const char *code) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, global, argv[3], result;
  napi_get_reference_value(env, s->on_event, &callback);
  napi_get_global(env, &global);
  napi_create_int32(env, kind, &argv[0]);
  argv[1] = value != NULL ? value : undefined_value(env);
  if (code != NULL) napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &argv[2]);
  else argv[2] = undefined_value(env);
  if (napi_make_callback(env, s->async, global, callback, 3, argv, &result) == napi_pending_exception) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_fatal_exception(env, exception);
  }
  napi_close_handle_scope(env, scope);
}

static void emit_text (session_t *s, int kind, const char *text, const char *code) {
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  napi_value value;
  napi_create_string_utf8(s->env, text, NAPI_AUTO_LENGTH, &value);
  emit(s, kind, value, code);
  napi_close_handle_scope(s->env, scope);
}

void emit_error (session_t *s, const char *message, const char *code) {
  if (s->failed || s->destroyed) return;
  s->failed = 1;
  uv_poll_stop(&s->poll);
  s->polling = 0;
  emit_text(s, EVENT_ERROR, message, code);
}

static void emit_errno (session_t *s, int err) {
  emit_error(s, uv_strerror(uv_translate_sys_error(err)), uv_err_name(uv_translate_sys_error(err)));
}

void emit_tls_error (session_t *s, const char *fallback) {
  char message[256];
  openssl_error(message, sizeof message, fallback);
  emit_error(s, message, "ERR_TLS");
}

static void poll_cb (uv_poll_t *handle, int status, int events);

// Watches what the session now waits for: readable while JavaScript takes data (or the
// handshake runs), writable while ciphertext waits for the socket or end() waits to finish.
void update_polling (session_t *s) {
  if (s->destroyed || s->failed) return;
  int events = 0;
  if ((s->reading || s->handshaking) && !s->peer_ended && !s->eof) events |= UV_READABLE;
  if (s->pending_end > s->pending_start || (s->ending && !s->finished)) events |= UV_WRITABLE;
  if (events == s->polling) return;
  s->polling = events;
  if (events == 0) uv_poll_stop(&s->poll);
  else uv_poll_start(&s->poll, events, poll_cb);
}

// Makes room for `more` bytes at the end of `pending`. Returns 0, or -1 when memory ran out.
static int reserve_pending (session_t *s, size_t more) {
  if (s->pending_end + more <= s->pending_capacity) return 0;
  // Compact, then grow: bytes wait here only while the kernel's buffer is full.
  memmove(s->pending, s->pending + s->pending_start, s->pending_end - s->pending_start);
  s->pending_end -= s->pending_start;
  s->pending_start = 0;
  if (s->pending_end + more <= s->pending_capacity) return 0;
  size_t capacity = s->pending_capacity * 2;
  while (capacity < s->pending_end + more) capacity *= 2;
  unsigned char *grown = realloc(s->pending, capacity);
  if (grown == NULL) return -1;
  s->pending = grown;
  s->pending_capacity = capacity;
  return 0;
}

// Moves SSL's output into `pending`. Returns 0, or -1 when memory ran out.
static int take_output (session_t *s) {
  if (s->ssl == NULL) return 0;
  size_t waiting = BIO_ctrl_pending(s->network_out);
  if (waiting == 0) return 0;
  if (reserve_pending(s, waiting) < 0) return -1;
  int n = BIO_read(s->network_out, s->pending + s->pending_end, (int)waiting);
  if (n > 0) s->pending_end += (size_t)n;
  return 0;
}

// Takes SSL's output and writes as much of `pending` as the socket takes. Only on the event
// loop (from_loop) does it emit: a failure during a call from JavaScript is left for the loop
// to meet again and report, so that no event runs inside write() or end().
// Returns 0, or -1 after an error was emitted.
int flush (session_t *s, int from_loop) {
  if (take_output(s) < 0) {
    if (from_loop) emit_error(s, "out of memory for the data channel's send buffer", "ENOMEM");
    return from_loop ? -1 : 0;
  }
  while (s->pending_end > s->pending_start) {
    ssize_t n = send(s->fd, s->pending + s->pending_start, s->pending_end - s->pending_start, MSG_NOSIGNAL);
    if (n > 0) {
      s->pending_start += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (!from_loop) return 0;
    emit_errno(s, n < 0 ? errno : EPIPE);
    return -1;
  }
  if (s->pending_end == s->pending_start) {
    s->pending_start = s->pending_end = 0;
    if (from_loop && s->ending && !s->finished) {
      s->finished = 1;
      shutdown(s->fd, SHUT_WR);
      emit(s, EVENT_FINISHED, NULL, NULL);
    }
  }
  return 0;
}

static void emit_handshake (session_t *s) {
  X509 *peer = SSL_get1_peer_certificate(s->ssl);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
  if (peer != NULL && X509_digest(peer, EVP_sha256(), digest, &length) == 1) {
    for (unsigned int i = 0; i < length; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  }
  X509_free(peer);
  emit_text(s, EVENT_HANDSHAKE, hex, NULL);
}

// Runs the handshake and decrypts what arrived, handing it to JavaScript while it takes data.
void process_input (session_t *s) {
  if (s->handshaking) {
    ERR_clear_error();
    int ret = SSL_do_handshake(s->ssl);
    if (flush(s, 1) < 0) return;
    if (ret != 1) {
      int err = SSL_get_error(s->ssl, ret);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) emit_tls_error(s, "TLS handshake failed");
      else if (s->eof) emit_error(s, "the peer closed the connection during the TLS handshake", "ECONNRESET");
      return;
    }
    s->handshaking = 0;
    emit_handshake(s);
    if (s->destroyed || s->failed) return;
  }
  while (s->reading && !s->destroyed && !s->failed && !s->peer_ended) {
    size_t filled = 0;
    int err = SSL_ERROR_NONE;
    while (filled < READ_BYTES) {
      size_t n = 0;
      ERR_clear_error();
      if (SSL_read_ex(s->ssl, s->plain + filled, READ_BYTES - filled, &n) == 1) {
        filled += n;
        continue;
      }
      err = SSL_get_error(s->ssl, 0);
      break;
    }
    // SSL_read may have answered a key update: that goes out too.
    if (flush(s, 1) < 0) return;
    if (filled > 0) {
      if (s->relayed) {
        // A relay whose other session is gone has nowhere to send what it read: JavaScript closes this one too.
        if (s->relay_peer == NULL || relay_forward(s, filled) < 0) return;
      } else {
        napi_handle_scope scope;
        napi_open_handle_scope(s->env, &scope);
        napi_value buffer;
        napi_create_buffer_copy(s->env, filled, s->plain, NULL, &buffer);
        emit(s, EVENT_DATA, buffer, NULL);
        napi_close_handle_scope(s->env, scope);
      }
      if (filled == READ_BYTES) continue;
    }
    // The end comes after everything that arrived before it, however often JavaScript paused.
    if (err == SSL_ERROR_ZERO_RETURN || (s->eof && err == SSL_ERROR_WANT_READ)) {
      s->peer_ended = 1;
      emit(s, EVENT_END, NULL, NULL);
    } else if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      emit_tls_error(s, "TLS read failed");
    }
    break;
  }
  update_polling(s);
}

// A plain session hands on what one recv brings; the loop calls again while more waits.
static void plain_readable (session_t *s) {
  if (!s->reading || s->peer_ended) return;
  ssize_t n;
  do n = recv(s->fd, s->plain, READ_BYTES, 0); while (n < 0 && errno == EINTR);
  if (n > 0 && s->relayed) {
    if (s->relay_peer != NULL) relay_forward(s, (size_t)n);
  } else if (n > 0) {
    napi_handle_scope scope;
    napi_open_handle_scope(s->env, &scope);
    napi_value buffer;
    napi_create_buffer_copy(s->env, (size_t)n, s->plain, NULL, &buffer);
    emit(s, EVENT_DATA, buffer, NULL);
    napi_close_handle_scope(s->env, scope);
  } else if (n == 0) {
    s->eof = 1;
    s->peer_ended = 1;
    emit(s, EVENT_END, NULL, NULL);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    emit_errno(s, errno);
  }
}

static void on_readable (session_t *s) {
  if (s->ssl == NULL) {
    plain_readable(s);
    return;
  }
  unsigned char buffer[64 * 1024];
  // Bounded per event, so that a fast peer cannot grow network_in without end while JavaScript is slow.
  for (int i = 0; i < READ_BYTES / (int)sizeof buffer; i++) {
    ssize_t n = recv(s->fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      BIO_write(s->network_in, buffer, (int)n);
      if ((size_t)n < sizeof buffer) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      emit_errno(s, errno);
      return;
    }
    // EOF. As with Node's TLS sockets, EOF without close_notify ends the session too
    // (ggml-rpc's framing tells a cut message), once what arrived before it is handed on; only
    // a peer gone mid-handshake is an error.
    s->eof = 1;
    break;
  }
  process_input(s);
}

static void poll_cb (uv_poll_t *handle, int status, int events) {
  session_t *s = handle->data;
  if (s->destroyed || s->failed) return;
  if (status < 0) {
    // libuv reports an error pending on the socket (POLLERR) as EBADF: the socket says which.
    int err = 0;
    socklen_t length = sizeof err;
    if (status == UV_EBADF && getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &length) == 0 && err != 0) emit_errno(s, err);
    else emit_error(s, uv_strerror(status), uv_err_name(status));
    return;
  }
  if (events & UV_WRITABLE) {
    int had_pending = s->pending_end > s->pending_start;
    if (flush(s, 1) < 0) return;
    if (had_pending && s->pending_end == s->pending_start) {
      // A relay's bytes were not JavaScript's: the other session may read again instead.
      if (s->relay_peer != NULL) relay_resume(s->relay_peer);
      else emit(s, EVENT_DRAINED, NULL, NULL);
    }
    if (s->destroyed || s->failed) return;
  }
  if (events & UV_READABLE) on_readable(s);
  update_polling(s);
}

static void session_free (session_t *s) {
  if (s->relay != NULL) rpc_relay_free(s->relay);
  free(s->relay);
  SSL_free(s->ssl); // frees both BIOs
  free(s->pending);
  free(s->plain);
  free(s);
}

// The memory lives until both the socket is closed and JavaScript's handle is gone, so that
// a call on a destroyed session finds it destroyed instead of freed.
static void session_closed (uv_handle_t *handle) {
  session_t *s = handle->data;
  if (--s->open_handles > 0) return;
  close(s->fd);
  s->handle_closed = 1;
  if (s->finalized) session_free(s);
}

static void session_destroy (session_t *s) {
  if (s->destroyed) return;
  s->destroyed = 1;
  napi_remove_env_cleanup_hook(s->env, (void (*)(void *))session_destroy, s);
  napi_delete_reference(s->env, s->on_event);
  napi_async_destroy(s->env, s->async);
  relay_detach(s);
  uv_close((uv_handle_t *)&s->poll, session_closed);
  uv_close((uv_handle_t *)&s->timer, session_closed);
}

static void session_finalize (napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_t *s = data;
  s->finalized = 1;
  if (!s->destroyed) session_destroy(s);
  else if (s->handle_closed) session_free(s);
}

static void context_finalize (napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  SSL_CTX_free(data);
}

static int always_accept (int preverified, X509_STORE_CTX *store) {
  (void)preverified;
  (void)store;
  // No CA vouches for these certificates: JavaScript pins the peer's fingerprint instead.
  return 1;
}

static int get_string (napi_env env, napi_value value, char **out) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return -1;
  *out = malloc(length + 1);
  if (*out == NULL) return -1;
  napi_get_value_string_utf8(env, value, *out, length + 1, &length);
  return 0;
}

// createContext(keyPem, certPem, server): a TLS 1.3 context presenting that key and certificate,
// asking for (server) or presenting (client) a certificate on every session.
static napi_value create_context (napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool server = false;
  char *key_pem = NULL;
  char *cert_pem = NULL;
  if (argc < 3 || get_string(env, argv[0], &key_pem) < 0 || get_string(env, argv[1], &cert_pem) < 0 || napi_get_value_bool(env, argv[2], &server) != napi_ok) {
    free(key_pem);
    free(cert_pem);
    return throw_error(env, "createContext(keyPem, certPem, server) needs two strings and a boolean");
  }
  char message[256] = "";
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  BIO *key_bio = BIO_new_mem_buf(key_pem, -1);
  BIO *cert_bio = BIO_new_mem_buf(cert_pem, -1);
  EVP_PKEY *key = key_bio == NULL ? NULL : PEM_read_bio_PrivateKey(key_bio, NULL, NULL, NULL);
  X509 *cert = cert_bio == NULL ? NULL : PEM_read_bio_X509(cert_bio, NULL, NULL, NULL);
  int ok = ctx != NULL && key != NULL && cert != NULL &&
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 &&
    SSL_CTX_use_certificate(ctx, cert) == 1 &&
    SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
    SSL_CTX_check_private_key(ctx) == 1;
  if (!ok) openssl_error(message, sizeof message, "cannot read the key or certificate");
  EVP_PKEY_free(key);
  X509_free(cert);
  BIO_free(key_bio);
  BIO_free(cert_bio);
  free(key_pem);
  free(cert_pem);
  if (!ok) {
    SSL_CTX_free(ctx);
    return throw_error(env, message);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), always_accept);
  // Sessions are never resumed: each is a new handshake with both certificates.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (server) SSL_CTX_set_num_tickets(ctx, 0);
  napi_value result;
  napi_create_external(env, ctx, context_finalize, NULL, &result);
  return result;
}

// Reads `count` arguments into argv; returns the session the first one is, or NULL.
session_t *session_arguments (napi_env env, napi_callback_info info, size_t count, napi_value *argv) {
  size_t argc = count;
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < count || napi_get_value_external(env, argv[0], &data) != napi_ok) return NULL;
  return data;
}

// open(context, fd, server, onEvent): starts a session on a duplicate of the connected TCP
// socket `fd` (the caller closes its own) and returns it: a TLS session with `context`, or a
// plain one where `context` is null. A plain session reads nothing until setReading(true).
static napi_value open_session (napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *ctx = NULL;
  int32_t fd = -1;
  bool server = false;
  napi_valuetype context_type, type;
  if (argc < 4 || napi_typeof(env, argv[0], &context_type) != napi_ok ||
      (context_type != napi_null && napi_get_value_external(env, argv[0], &ctx) != napi_ok) || napi_get_value_int32(env, argv[1], &fd) != napi_ok ||
      napi_get_value_bool(env, argv[2], &server) != napi_ok || napi_typeof(env, argv[3], &type) != napi_ok || type != napi_function) {
    return throw_error(env, "open(context, fd, server, onEvent) needs a context or null, a file descriptor, a boolean and a function");
  }
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_error(env, "no event loop");
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return throw_error(env, strerror(errno));
  fcntl(own, F_SETFL, fcntl(own, F_GETFL) | O_NONBLOCK);
  session_t *s = calloc(1, sizeof *s);
  if (s != NULL) {
    s->plain = malloc(READ_BYTES);
    s->pending_capacity = 64 * 1024;
    s->pending = malloc(s->pending_capacity);
    if (ctx != NULL) {
      s->ssl = SSL_new(ctx);
      s->network_in = BIO_new(BIO_s_mem());
      s->network_out = BIO_new(BIO_s_mem());
    }
  }
  if (s == NULL || s->plain == NULL || s->pending == NULL || (ctx != NULL && (s->ssl == NULL || s->network_in == NULL || s->network_out == NULL))) {
    if (s != NULL) {
      if (s->ssl == NULL) {
        BIO_free(s->network_in);
        BIO_free(s->network_out);
      } else {
        SSL_set_bio(s->ssl, s->network_in, s->network_out);
      }
      s->fd = own;
      session_free(s);
    }
    close(own);
    return throw_error(env, "out of memory for a TLS session");
  }
  if (ctx != NULL) {
    // An empty memory BIO reads as "retry later", not EOF.
    BIO_set_mem_eof_return(s->network_in, -1);
    SSL_set_bio(s->ssl, s->network_in, s->network_out);
    if (server) SSL_set_accept_state(s->ssl);
    else SSL_set_connect_state(s->ssl);
    s->handshaking = 1;
    s->reading = 1;
  }
  s->env = env;
  s->fd = own;
  s->poll.data = s;
  s->timer.data = s;
  napi_create_reference(env, argv[3], 1, &s->on_event);
  napi_value name;
  napi_create_string_utf8(env, "llmesh:native-socket", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->async);
  uv_poll_init_socket(loop, &s->poll, own);
  uv_timer_init(loop, &s->timer);
  s->open_handles = 2;
  napi_add_env_cleanup_hook(env, (void (*)(void *))session_destroy, s);
  // The client speaks first; its ClientHello goes out from the loop, like every event.
  if (ctx != NULL && !server) {
    ERR_clear_error();
    SSL_do_handshake(s->ssl);
    take_output(s);
  }
  update_polling(s);
  napi_value result;
  napi_create_external(env, s, session_finalize, NULL, &result);
  return result;
}

// The bytes of a Uint8Array (a Buffer or any other view). Returns 0, or -1 for anything else.
static int get_bytes (napi_env env, napi_value value, void **data, size_t *length) {
  if (napi_get_buffer_info(env, value, data, length) == napi_ok) return 0;
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, value, &type, length, data, &buffer, &offset) != napi_ok || type != napi_uint8_array) return -1;
  return 0;
}

// The most parts of one write that go to the kernel in one call.
#define MAX_WRITE_PARTS 16

// Plain session: sends `parts` in one call where nothing waits before them, so that a header and
// its payload leave in one segment (rpc-server reads them with separate recv calls and each
// extra segment costs it a wake-up), and queues what the socket did not take. A failing send is
// left for the loop to meet again and report. Returns 0, or -1 when memory ran out.
int send_plain (session_t *s, struct iovec *parts, int count) {
  size_t sent = 0;
  if (s->pending_end == s->pending_start) {
    struct msghdr message = { .msg_iov = parts, .msg_iovlen = (size_t)count };
    ssize_t n;
    do n = sendmsg(s->fd, &message, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    if (n > 0) sent = (size_t)n;
  }
  for (int i = 0; i < count; i++) {
    size_t skip = sent < parts[i].iov_len ? sent : parts[i].iov_len;
    sent -= skip;
    size_t rest = parts[i].iov_len - skip;
    if (rest == 0) continue;
    if (reserve_pending(s, rest) < 0) return -1;
    memcpy(s->pending + s->pending_end, (unsigned char *)parts[i].iov_base + skip, rest);
    s->pending_end += rest;
  }
  return 0;
}

// write(session, data): sends `data` (a Uint8Array, or an array of them to send together),
// encrypted on a TLS session, where the socket takes it; returns the bytes still waiting for
// the socket (EVENT_DRAINED follows once they are sent).
static napi_value write_session (napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session_t *s = session_arguments(env, info, 2, argv);
  bool is_array = false;
  uint32_t count = 1;
  if (s != NULL && napi_is_array(env, argv[1], &is_array) == napi_ok && is_array) napi_get_array_length(env, argv[1], &count);
  struct iovec parts[MAX_WRITE_PARTS];
  if (s == NULL || count > MAX_WRITE_PARTS) return throw_error(env, "write(session, data) needs a session and a Uint8Array or an array of at most 16");
  for (uint32_t i = 0; i < count; i++) {
    napi_value part = argv[1];
    if (is_array) napi_get_element(env, argv[1], i, &part);
    if (get_bytes(env, part, &parts[i].iov_base, &parts[i].iov_len) < 0) return throw_error(env, "write(session, data) needs a session and a Uint8Array or an array of them");
  }
  if (s->destroyed || s->failed || s->ending || s->handshaking) return throw_error(env, "the session cannot send now");
  if (s->ssl == NULL) {
    // What waited goes first, where the kernel takes it now.
    flush(s, 0);
    if (send_plain(s, parts, (int)count) < 0) return throw_error(env, "out of memory for the session's send buffer");
  } else {
    for (uint32_t i = 0; i < count; i++) {
      if (parts[i].iov_len == 0) continue;
      size_t written = 0;
      ERR_clear_error();
      if (SSL_write_ex(s->ssl, parts[i].iov_base, parts[i].iov_len, &written) != 1 || written != parts[i].iov_len) {
        char message[256];
        openssl_error(message, sizeof message, "TLS write failed");
        return throw_error(env, message);
      }
    }
    // Sent at once where the socket takes it: a decode step's request leaves in this call.
    flush(s, 0);
  }
  update_polling(s);
  napi_value result;
  napi_create_double(env, (double)(s->pending_end - s->pending_start), &result);
  return result;
}

// setReading(session, reading): whether JavaScript takes data now. Resuming hands on what
// arrived meanwhile before it returns: call it from a task of its own, not from an event.
static napi_value set_reading (napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session_t *s = session_arguments(env, info, 2, argv);
  bool reading = false;
  if (s == NULL || napi_get_value_bool(env, argv[1], &reading) != napi_ok) return throw_error(env, "setReading(session, reading) needs a session and a boolean");
  // A relay decides itself when its sessions read.
  if (s->destroyed || s->failed || s->relayed) return undefined_value(env);
  int was = s->reading;
  s->reading = reading;
  update_polling(s);
  // Resumed: what SSL already holds is handed on without waiting for the socket.
  if (reading && !was && !s->handshaking && s->ssl != NULL) process_input(s);
  return undefined_value(env);
}

// end(session): sends close_notify and then FIN, after everything written (EVENT_FINISHED).
static napi_value end_session (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = session_arguments(env, info, 1, argv);
  if (s == NULL) return throw_error(env, "end(session) needs a session");
  if (s->destroyed || s->failed || s->ending) return undefined_value(env);
  s->ending = 1;
  if (s->ssl != NULL && !s->handshaking) {
    ERR_clear_error();
    SSL_shutdown(s->ssl);
  }
  flush(s, 0);
  update_polling(s);
  return undefined_value(env);
}

// destroy(session): closes the socket at once; no event follows.
static napi_value destroy_session (napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session_t *s = session_arguments(env, info, 1, argv);
  if (s == NULL) return throw_error(env, "destroy(session) needs a session");
  session_destroy(s);
  return undefined_value(env);
}

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
    { "createContext", NULL, create_context, NULL, NULL, NULL, napi_default, NULL },
    { "open", NULL, open_session, NULL, NULL, NULL, napi_default, NULL },
    { "write", NULL, write_session, NULL, NULL, NULL, napi_default, NULL },
    { "setReading", NULL, set_reading, NULL, NULL, NULL, napi_default, NULL },
    { "end", NULL, end_session, NULL, NULL, NULL, napi_default, NULL },
    { "destroy", NULL, destroy_session, NULL, NULL, NULL, napi_default, NULL },
    { "relay", NULL, relay_sessions, NULL, NULL, NULL, napi_default, NULL },
    { "relayRecords", NULL, relay_records, NULL, NULL, NULL, napi_default, NULL }
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}
