/*
 * st_error.c - messages for the ST_ error codes.
 */
#include "store/st_store.h"

const char *st_strerror(int code) {
  switch (code) {
#define ST_ERR_CASE(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    ST_ERRNO_MAP(ST_ERR_CASE)
#undef ST_ERR_CASE
  default:
    return "unknown store error";
  }
}
