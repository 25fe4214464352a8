/*
 * fm_parse.h - a value as a user typed it (a flag's value, a generator model
 * option, a request's text), read strictly: the whole text, decimal, no
 * leading space, no trailing bytes, in a stated range.
 *
 * Each call returns FM_OK with its outputs set, or FM_EUSAGE with one
 * sentence in errmsg that names the value by `name` (the CLI passes its
 * flag): "NAME: 'x' is not an integer between LO and HI", "NAME: V is out of
 * range: must be between LO and HI" (a value that overflows the type too),
 * "NAME: 'x' is not a range A:B", "NAME: empty list". Outputs are untouched
 * on error. Owned by the run library authors; the CLI's flag parsers
 * (cli/opts.c) and the generator's model options (run/fm_trace.c) use them.
 */
#ifndef FLEXMOE_RUN_FM_PARSE_H
#define FLEXMOE_RUN_FM_PARSE_H

#include <stddef.h>
#include <stdint.h>

int fm_parse_long(const char *name, const char *text, long lo, long hi, long *out, char *errmsg,
                  size_t errlen);
int fm_parse_double(const char *name, const char *text, double lo, double hi, double *out,
                    char *errmsg, size_t errlen);
/* "A:B" (half-open, either side optional: "100:", ":50") into [*a, *b);
 * *b = -1 means "to the end". */
int fm_parse_range(const char *name, const char *text, int64_t *a, int64_t *b, char *errmsg,
                   size_t errlen);
/* "8,16,64" into out[0..*n), each in [lo, hi], at most max values. */
int fm_parse_list(const char *name, const char *text, long lo, long hi, long *out, int max,
                  int *n, char *errmsg, size_t errlen);
/* A memory size ("512M", "4G", bytes: traces/tr_trace.h tr_parse_size)
 * into *out: "NAME: 'x' is not a size between 1 byte and 1 EiB (...)". */
int fm_parse_size(const char *name, const char *text, uint64_t *out, char *errmsg,
                  size_t errlen);
/* "X[:Y]" into *a in [lo, hi] and *b in [lo2, hi2]; b NULL: no ":Y" part
 * allowed. */
int fm_parse_pair(const char *name, const char *text, double lo, double hi, double *a,
                  double lo2, double hi2, double *b, char *errmsg, size_t errlen);

#endif
