#!/usr/bin/env node
// The `mesh` executable. It is CommonJS for one reason: the libuv thread pool size must be set
// before the pool starts, and Node's ES module loader starts it before an ES module's first line.
//
// node-llama-cpp runs each decode step on whichever pool thread is free, and OpenMP (which
// the native build uses for ggml's compute threads) keeps one thread team per calling thread:
// with the default 4 pool threads, up to 4 teams spin against each other on a small machine,
// and decoding measured 0.4x llama-server's speed on 2 cores; with one pool thread, 0.9x.
process.env.UV_THREADPOOL_SIZE ??= '1'
void import('./cli.js')
