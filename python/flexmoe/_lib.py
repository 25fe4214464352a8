"""libflexmoe through cffi (ABI mode): the declarations of the C API and the
one place the shared library is found and opened.

Where: $FLEXMOE_LIBRARY if set (a build tree's python/libflexmoe.so), else
next to this package (an install with libflexmoe in the package), else the
folder meson-python puts a project's shared libraries in
(site-packages/.flexmoe.mesonpy.libs), else the system's library path
(`meson install`).
"""
import ctypes.util
import os
import sys
from pathlib import Path

import cffi

CDEF = """
const char *fm_version(void);
int fm_simulate_json(const char *request, char **result, char *errmsg, size_t errlen);
int fm_results_json(const char *db_path, char **result, char *errmsg, size_t errlen);
int fm_report_json(const char *db_path, const char *kind, char **result, char *errmsg,
                   size_t errlen);
int fm_trace_loads_json(const char *db_path, char **result, char *errmsg, size_t errlen);
int fm_sweep_json(const char *request, char **result, char *errmsg, size_t errlen);
char *fm_keys_json(void);
char *fm_commands_json(void);
void fm_free(void *p);

typedef struct pl_planner pl_planner;
int pl_planner_api_version(void);
const char *pl_planner_version(void);
const char *pl_planner_strerror(int code);
int pl_planner_create_kv(pl_planner **out, const char *spec, const char *env_kv,
                         char *err, size_t errlen);
void pl_planner_destroy(pl_planner *p);
const char *pl_planner_spec(const pl_planner *p);
int pl_planner_observe(pl_planner *p, int iteration, int layer, const int64_t *counts);
int pl_planner_plan(pl_planner *p, int iteration, int layer, const int64_t *upcoming,
                    int *changed, int *nmoves);
int pl_planner_moves(const pl_planner *p, int64_t *out, int max);
int pl_planner_plan_flags(const pl_planner *p, int *background, int *uncharged);
int pl_planner_placement(const pl_planner *p, int layer, int32_t *out);
int pl_planner_route(pl_planner *p, int layer, const int64_t *counts,
                     int64_t *gpu_load, double *balance, int64_t *dropped);
int pl_planner_serving(const pl_planner *p, int layer, int32_t *out);
int pl_planner_weights_first(const pl_planner *p, int layer);
int pl_planner_temporaries(pl_planner *p, int layer, const int64_t *counts, int32_t *out,
                           int max);
int pl_planner_route_served(pl_planner *p, int layer, const int64_t *counts,
                            int64_t *gpu_load, double *balance, int64_t *dropped);
"""

FM_OK, FM_EFAIL, FM_EUSAGE = 0, 1, 2
ERRLEN = 1024

ffi = cffi.FFI()
ffi.cdef(CDEF)
_lib = None


def _candidates():
    name = "libflexmoe.dylib" if sys.platform == "darwin" else "libflexmoe.so"
    env = os.environ.get("FLEXMOE_LIBRARY")
    if env:
        yield env
        return
    here = Path(__file__).resolve().parent
    yield str(here / name)
    yield str(here.parent / ".flexmoe.mesonpy.libs" / name)
    found = ctypes.util.find_library("flexmoe")
    if found:
        yield found


def lib():
    """The opened library (opened once)."""
    global _lib
    if _lib is None:
        tried = []
        for path in _candidates():
            if os.path.sep in path and not os.path.exists(path):
                tried.append(path)
                continue
            try:
                _lib = ffi.dlopen(path)
                break
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
        if _lib is None:
            raise ImportError("flexmoe: cannot find libflexmoe; looked at %s (set "
                              "FLEXMOE_LIBRARY to its path)" % ", ".join(tried))
    return _lib
