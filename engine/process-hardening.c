/*
 * llmesh's process hardening library: llama-server and rpc-server load it through LD_PRELOAD,
 * the mesh process as a Node addon (see process-hardening.ts, which builds it with cc).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* CAP_IPC_LOCK lets a process lock memory whatever its RLIMIT_MEMLOCK. */
static int may_lock_beyond_limit(void) {
  FILE *status = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long caps = 0;
  int found = 0;
  if (status == NULL) return 0;
  while (!found && fgets(line, sizeof line, status) != NULL) found = sscanf(line, "CapEff: %llx", &caps) == 1;
  fclose(status);
  return found && ((caps >> 14) & 1);
}

static void lock_memory(void) {
  struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
  struct rlimit limit;
  if (setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0 && !may_lock_beyond_limit() && getrlimit(RLIMIT_MEMLOCK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    /* MCL_FUTURE under a finite limit makes later allocations fail: lock nothing rather than crash. */
    fprintf(stderr, "llmesh-mlock: not allowed: RLIMIT_MEMLOCK is %llu bytes, and this process may neither raise it nor lock beyond it (CAP_IPC_LOCK)\n", (unsigned long long) limit.rlim_cur);
    return;
  }
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    fprintf(stderr, "llmesh-mlock: not allowed: mlockall failed: %s\n", strerror(errno));
    return;
  }
  fprintf(stderr, "llmesh-mlock: locked\n");
}

__attribute__((constructor)) static void llmesh_harden(void) {
  struct rlimit none = { 0, 0 };
  setrlimit(RLIMIT_CORE, &none);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const char *lock = getenv("LLMESH_MLOCK");
  if (lock != NULL && strcmp(lock, "1") == 0) lock_memory();
}

/* Node addon entry (only the mesh process loads it so): exports the dumpable flag as read back. */
typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
extern int napi_create_int32(napi_env env, int value, napi_value *result) __attribute__((weak));
extern int napi_set_named_property(napi_env env, napi_value object, const char *name, napi_value value) __attribute__((weak));

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value dumpable;
  if (napi_create_int32 != NULL && napi_set_named_property != NULL && napi_create_int32(env, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), &dumpable) == 0) {
    napi_set_named_property(env, exports, "dumpable", dumpable);
  }
  return exports;
}
