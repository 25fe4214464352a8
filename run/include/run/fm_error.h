/*
 * fm_error.h - what the run library's calls return.
 *
 * FM_OK, or FM_EUSAGE when the configuration itself is wrong (a value out of
 * range, an unknown name: what a user fixes on the command line), or
 * FM_EFAIL when an input or operation failed (a file that cannot be read, a
 * database that cannot be written). Every failing call also writes one
 * sentence naming the file, key or value at fault into the caller's buffer.
 * The values are the CLI's exit codes (2 for a bad command line, 1 for a
 * failure). Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_ERROR_H
#define FLEXMOE_RUN_FM_ERROR_H

#include <stddef.h>

enum { FM_OK = 0, FM_EFAIL = 1, FM_EUSAGE = 2 };

/* Writes the sentence (printf format) into em[el] when em is given, and
 * returns code: `return fm_fail(em, el, FM_EFAIL, "%s: ...", path);`. */
int fm_fail(char *em, size_t el, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
