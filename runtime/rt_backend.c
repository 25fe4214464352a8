/*
 * rt_backend.c - backend registry and error strings of the runtime.
 */
#include "runtime/rt_backend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexmoe_config.h"

const char *rt_strerror(int code) {
  switch (code) {
#define RT_ERR_STR(name, value, msg) \
  case value:                        \
    return msg;
    RT_ERRNO_MAP(RT_ERR_STR)
#undef RT_ERR_STR
  default:
    return "unknown runtime error";
  }
}

static rt_malloc_fn hook_malloc = malloc;
static rt_realloc_fn hook_realloc = realloc;
static rt_free_fn hook_free = free;

void rt_set_allocator(rt_malloc_fn m, rt_realloc_fn r, rt_free_fn f) {
  hook_malloc = m ? m : malloc;
  hook_realloc = r ? r : realloc;
  hook_free = f ? f : free;
}

void *rt_malloc(size_t size) { return hook_malloc(size ? size : 1); }

void *rt_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  size_t bytes = n * size;
  void *p = hook_malloc(bytes > 0 ? bytes : 1);
  if (p) memset(p, 0, bytes);
  return p;
}

void *rt_realloc(void *ptr, size_t size) { return hook_realloc(ptr, size ? size : 1); }

void rt_free(void *ptr) {
  if (ptr) hook_free(ptr);
}

static const rt_backend_ops *const registry[] = {
    &rt_backend_cpu_ops,
#if FLEXMOE_HAVE_CUDA
    &rt_backend_cuda_ops,
#endif
#if FLEXMOE_HAVE_NCCL
    &rt_backend_nccl_ops,
#endif
    NULL};

const rt_backend_ops *const *rt_backend_registry(void) { return registry; }

const rt_backend_ops *rt_backend_find(const char *name) {
  for (int i = 0; registry[i]; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}

int rt_backend_known(const char *name) {
  return strcmp(name, "cpu") == 0 || strcmp(name, "cuda") == 0 ||
         strcmp(name, "nccl") == 0;
}

int rt_backend_create(rt_backend **out, const char *name,
                      const rt_backend_config *cfg, char *err, size_t errlen) {
  const rt_backend_ops *ops = rt_backend_find(name);
  if (!ops) {
    if (err)
      snprintf(err, errlen,
               rt_backend_known(name)
                   ? "backend '%s' is not built in (configure with -D%s=enabled)"
                   : "unknown backend '%s' (cpu, cuda, nccl)",
               name, name);
    return RT_EBACKEND;
  }
  /* nccl takes its rank count from the MPI world when given 0. */
  if (!cfg || cfg->ranks < (strcmp(name, "nccl") == 0 ? 0 : 1)) {
    if (err) snprintf(err, errlen, "backend '%s': rank count must be >= 1", name);
    return RT_EINVAL;
  }
  return ops->create(out, cfg, err, errlen);
}

void rt_backend_destroy(rt_backend *b) {
  if (b) b->ops->destroy(b);
}
