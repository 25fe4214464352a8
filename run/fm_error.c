/*
 * fm_error.c - the run library's one way to fail with a sentence (fm_error.h).
 */
#include "run/fm_error.h"

#include <stdarg.h>
#include <stdio.h>

int fm_fail(char *em, size_t el, int code, const char *fmt, ...) {
  if (em && el) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(em, el, fmt, ap);
    va_end(ap);
  }
  return code;
}
