/*
 * tr_error.c - messages for the TR_ error codes.
 */
#include "traces/tr_trace.h"

const char *tr_strerror(int code) {
  switch (code) {
#define TR_ERR_CASE(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    TR_ERRNO_MAP(TR_ERR_CASE)
#undef TR_ERR_CASE
  default:
    return "unknown trace error";
  }
}
