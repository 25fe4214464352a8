/*
 * fm_table.h - the one table printer of the text renderings (run/fm_text.h)
 * and the CLI: a table is an array of columns ending with a row whose fmt
 * is NULL; a row is an array of cells in the same order. The text line,
 * the CSV line and the JSON object of a row all come from the same columns.
 *
 * Text: each column after its separator (sep, NULL: one space, none before
 * the first), the cell in fmt padded to width (negative: left aligned; a
 * "%s" string cell is never cut); the header line the same with the heads.
 * CSV: the columns' names (the key's JSON name, else name, else head),
 * strings quoted when they need it, numbers in csv (NULL: fmt), NaN as an
 * empty field. JSON: an object of the named columns (numbers that are not
 * finite as null). in: where the column appears (FM_IN_*; 0: everywhere).
 * Owned by the run library authors (run/fm_table.c).
 */
#ifndef FLEXMOE_RUN_FM_TABLE_H
#define FLEXMOE_RUN_FM_TABLE_H

#include <stdio.h>

#include "run/fm_keys.h"

enum { FM_IN_TEXT = 1, FM_IN_CSV = 2, FM_IN_JSON = 4, FM_IN_ALL = 7 };
typedef struct fm_col {
  const char *head;
  int width;
  const char *fmt; /* printf conversion of the cell: "%s", "%lld" (FM_I), "%.3f" (FM_F) */
  const char *sep;
  const char *nan; /* text of a NaN cell (NULL: printf's) */
  int finite;      /* 1: .nan also for infinities */
  const char *csv; /* CSV conversion (NULL: fmt) */
  const char *name;
  int key; /* FM_COL_KEY(ID): named by the key FM_KEY_ID; 0: by name or head */
  int in;
} fm_col;
#define FM_COL_KEY(id) (FM_KEY_##id + 1)
/* A column of head, width and fmt alone. */
#define FM_COL(head_, width_, fmt_) {.head = (head_), .width = (width_), .fmt = (fmt_)}
#define FM_END_COL {.fmt = NULL}

typedef struct fm_cell {
  char type; /* 's', 'i' or 'f' */
  const char *s;
  long long i;
  double f;
} fm_cell;
#define FM_S(x) {.type = 's', .s = (x)}
#define FM_I(x) {.type = 'i', .i = (long long)(x)}
#define FM_F(x) {.type = 'f', .f = (double)(x)}

/* The header line (csv 0: text, 1: CSV names) and one row, on out. */
void fm_table_head(FILE *out, const fm_col *cols, int csv);
void fm_table_row(FILE *out, const fm_col *cols, const fm_cell *cells, int csv);
/* The row as a JSON object (the caller's); NULL when out of memory. */
struct json_t *fm_table_object(const fm_col *cols, const fm_cell *cells);

#endif
