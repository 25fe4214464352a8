/*
 * fm_table.c - the one table printer of the run library's text renderings
 * (fm_table.h: fm_col), used by the CLI's subcommands.
 *
 * A table is an array of column specs; a row is an array of cells, one per
 * column, in the same order. The text line, the CSV line and the JSON
 * object of a row all come from the same spec: text pads each cell to the
 * column's width after its separator (none before the first column unless
 * it names one); CSV writes the columns by name, quoting strings that need
 * it, NaN as an empty field; JSON names a column by its key of
 * run/fm_keys.h where it has one.
 */
#include "run/fm_table.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "run/fm_json.h"
#include "run/fm_keys.h"

#include <jansson.h>

/* The column's CSV and JSON name: its key's, its own, or its header. */
static const char *col_name(const fm_col *c) {
  if (c->key)
    return fm_key_of((fm_key_id)(c->key - 1))->name;
  return c->name ? c->name : c->head;
}

static int col_in(const fm_col *c, int what) {
  return (c->in ? c->in : FM_IN_ALL) & what;
}

/* A number cell in fmt. */
static void num_text(const fm_cell *v, const char *fmt, char *buf, size_t len) {
  if (v->type == 'i')
    snprintf(buf, len, fmt, v->i);
  else
    snprintf(buf, len, fmt, v->f);
}

/* The cell as text in the column's fmt (a NaN, or with .finite any number
 * that is not finite, as the column's .nan when it has one). */
static void cell_text(const fm_col *c, const fm_cell *v, char *buf, size_t len) {
  if (v->type == 's')
    snprintf(buf, len, c->fmt, v->s ? v->s : "");
  else if (v->type == 'f' && c->nan && (isnan(v->f) || (c->finite && !isfinite(v->f))))
    snprintf(buf, len, "%s", c->nan);
  else
    num_text(v, c->fmt, buf, len);
}

/* One text line of cells (heads when cells is NULL). */
static void text_line(FILE *out, const fm_col *cols, const fm_cell *cells) {
  int first = 1;
  for (int i = 0; cols[i].fmt; i++) {
    const fm_col *c = &cols[i];
    if (!col_in(c, FM_IN_TEXT))
      continue;
    char buf[512];
    const char *text = buf; /* a string cell as it is: never cut */
    if (!cells)
      text = c->head ? c->head : "";
    else if (cells[i].type == 's' && strcmp(c->fmt, "%s") == 0)
      text = cells[i].s ? cells[i].s : "";
    else
      cell_text(c, &cells[i], buf, sizeof buf);
    fprintf(out, "%s%*s", c->sep ? c->sep : first ? "" : " ", c->width, text);
    first = 0;
  }
  fputc('\n', out);
}

/* A CSV field, quoted when it holds a comma, quote or newline. */
static void csv_field(FILE *out, const char *s) {
  if (!strpbrk(s, ",\"\n")) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

/* One CSV line of cells (names when cells is NULL). */
static void csv_line(FILE *out, const fm_col *cols, const fm_cell *cells) {
  int first = 1;
  for (int i = 0; cols[i].fmt; i++) {
    const fm_col *c = &cols[i];
    if (!col_in(c, FM_IN_CSV))
      continue;
    if (!first)
      fputc(',', out);
    first = 0;
    const fm_cell *v = cells ? &cells[i] : NULL;
    char buf[512] = "";
    if (!v)
      fputs(col_name(c), out);
    else if (v->type == 's')
      csv_field(out, v->s ? v->s : "");
    else if (v->type == 'i' || !isnan(v->f)) {
      num_text(v, c->csv ? c->csv : c->fmt, buf, sizeof buf);
      fputs(buf, out);
    }
  }
  fputc('\n', out);
}

void fm_table_head(FILE *out, const fm_col *cols, int csv) {
  if (csv)
    csv_line(out, cols, NULL);
  else
    text_line(out, cols, NULL);
}

void fm_table_row(FILE *out, const fm_col *cols, const fm_cell *cells, int csv) {
  if (csv)
    csv_line(out, cols, cells);
  else
    text_line(out, cols, cells);
}

json_t *fm_table_object(const fm_col *cols, const fm_cell *cells) {
  json_t *o = json_object();
  int bad = !o;
  for (int i = 0; cols[i].fmt && !bad; i++) {
    const fm_cell *v = &cells[i];
    if (!col_in(&cols[i], FM_IN_JSON))
      continue;
    json_t *x = v->type == 's'   ? fm_json_string(v->s)
                : v->type == 'i' ? json_integer((json_int_t)v->i)
                                 : fm_json_number(v->f);
    bad |= json_object_set_new(o, col_name(&cols[i]), x);
  }
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}
