/*
 * test_fm_text.c - the text faces of the run library: the table of
 * commands (run/fm_commands.h), the table printer (run/fm_table.h) and the
 * renderings of run/fm_text.h that no command line of the CLI tests reaches
 * byte for byte (a sweep's bar, its interrupted message, the shell words).
 * The commands' own outputs are compared against recorded ones by
 * tests/run/golden.py and scripts/compare_cli.py.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/fm_commands.h"
#include "run/fm_table.h"
#include "run/fm_text.h"
#include "traces/tr_gen.h"

/* What f wrote into a memstream, NUL-terminated (the caller frees). */
typedef struct capture {
  char *text;
  size_t len;
  FILE *f;
} capture;

static FILE *capture_open(capture *c) {
  *c = (capture){.text = NULL, .len = 0, .f = open_memstream(&c->text, &c->len)};
  cr_assert_not_null(c->f);
  return c->f;
}

static char *capture_close(capture *c) {
  cr_assert_eq(fclose(c->f), 0);
  return c->text;
}

/* Each menu lists its commands in table order, and every row has the
 * prose --help prints around its flags. */
Test(fm_commands, menus_list_their_commands_in_order) {
  static const char *const main_words[] = {"sim",      "sweep",    "report", "trace",
                                           "place",    "policies", "clusters", "net",
                                           "run",      "calibrate", "validate"};
  static const char *const trace_words[] = {"info", "stats", "gen", "fit", "rescale", "import"};
  size_t nm = sizeof main_words / sizeof main_words[0], nt = 6;
  for (size_t i = 0; i < nm; i++)
    cr_assert_str_eq(fm_command_in_menu("", (int)i)->name, main_words[i]);
  cr_assert_null(fm_command_in_menu("", (int)nm));
  for (size_t i = 0; i < nt; i++) {
    char name[32];
    snprintf(name, sizeof name, "trace %s", trace_words[i]);
    cr_assert_str_eq(fm_command_in_menu("trace", (int)i)->name, name);
    cr_assert_eq(fm_command_of(name), fm_command_in_menu("trace", (int)i));
  }
  cr_assert_null(fm_command_in_menu("trace", (int)nt));
  cr_assert_null(fm_command_in_menu("sim", 0));
  cr_assert_null(fm_command_of("bogus"));
  cr_assert_null(fm_command_of(NULL));
  for (int i = 0; fm_command_in_menu("", i); i++) {
    const fm_command *c = fm_command_in_menu("", i);
    cr_assert(c->summary[0] && c->usage[0] && c->tail[0], "%s", c->name);
    cr_assert_eq(c->usage[strlen(c->usage) - 1], '\n', "%s", c->name);
    cr_assert_eq(c->tail[strlen(c->tail) - 1], '\n', "%s", c->name);
  }
}

/* A menu's help: usage, one line per command with the words padded to the
 * longest plus one, tail. */
Test(fm_commands, a_menu_pads_its_words_to_one_column) {
  capture c;
  fm_command_menu_print("trace", capture_open(&c));
  char *text = capture_close(&c);
  const fm_command *m = fm_command_of("trace");
  cr_assert(strncmp(text, m->usage, strlen(m->usage)) == 0);
  cr_assert_str_eq(text + strlen(text) - strlen(m->tail), m->tail);
  cr_assert_not_null(strstr(text, "\n  info     shape, metadata"));
  cr_assert_not_null(strstr(text, "\n  rescale  map a trace"));
  free(text);
}

/* trace gen's tail lists the generator's patterns before its own text,
 * on stdout and in the JSON the Python package reads alike. */
Test(fm_commands, gen_help_lists_the_patterns) {
  const fm_command *g = fm_command_of("trace gen");
  capture c;
  fm_command_tail_print(g, capture_open(&c));
  char *tail = capture_close(&c);
  cr_assert(strncmp(tail, "\npatterns:\n", 11) == 0);
  for (int i = 0; tr_gen_patterns[i]; i++)
    cr_assert_not_null(strstr(tail, tr_gen_patterns[i]), "%s", tr_gen_patterns[i]);
  cr_assert_str_eq(tail + strlen(tail) - strlen(g->tail), g->tail);
  char *js = fm_commands_json_text();
  json_t *list = json_loads(js, 0, NULL);
  cr_assert(json_is_array(list));
  size_t n = 0;
  for (size_t i = 0; i < json_array_size(list); i++) {
    const json_t *row = json_array_get(list, i);
    const char *name = json_string_value(json_object_get(row, "name"));
    cr_assert_not_null(fm_command_of(name), "%s", name);
    if (strcmp(name, "trace gen") == 0)
      cr_assert_str_eq(json_string_value(json_object_get(row, "tail")), tail);
    n++;
  }
  cr_assert_eq(n, 18); /* flexmoe, its 11 commands, trace's 6 */
  json_decref(list);
  free(js);
  free(tail);
}

/* One spec, three outputs: padded text (left-aligned and with a separator),
 * CSV (quoted where needed, NaN empty, csv format), JSON (named by key). */
Test(fm_table, text_csv_and_json_come_from_one_spec) {
  static const fm_col cols[] = {
      {.head = "name", .width = -6, .fmt = "%s", .key = FM_COL_KEY(TRACE)},
      {.head = "n", .width = 3, .fmt = "%lld", .sep = " | "},
      {.head = "x", .width = 6, .fmt = "%.2f", .nan = "-", .csv = "%.4f", .name = "x_ms"},
      FM_END_COL};
  const fm_cell row[] = {FM_S("a,b"), FM_I(7), FM_F(NAN)}, row2[] = {FM_S("c"), FM_I(1),
                                                                    FM_F(0.5)};
  capture c;
  FILE *f = capture_open(&c);
  fm_table_head(f, cols, 0);
  fm_table_row(f, cols, row, 0);
  fm_table_head(f, cols, 1);
  fm_table_row(f, cols, row, 1);
  fm_table_row(f, cols, row2, 1);
  char *text = capture_close(&c);
  cr_assert_str_eq(text, "name   |   n      x\n"
                         "a,b    |   7      -\n"
                         "trace,n,x_ms\n"
                         "\"a,b\",7,\n"
                         "c,1,0.5000\n");
  free(text);
  json_t *o = fm_table_object(cols, row2);
  char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  cr_assert_str_eq(js, "{\"trace\":\"c\",\"n\":1,\"x_ms\":0.5}");
  free(js);
  json_decref(o);
}

/* The resume command a shell reads back word for word: plain words as
 * they are, others (spaces, quotes, empty) in single quotes; cut, never
 * past len. */
Test(fm_text, shell_words_quote_what_a_shell_would_split) {
  char *argv[] = {"--db", "a b's.db", "--gpus=8,16", ""};
  char buf[256];
  fm_text_shell_words("flexmoe sweep", 4, argv, buf, sizeof buf);
  cr_assert_str_eq(buf, "flexmoe sweep --db 'a b'\\''s.db' --gpus=8,16 ''");
  char small[20];
  fm_text_shell_words("flexmoe sweep", 4, argv, small, sizeof small);
  cr_assert_str_eq(small, "flexmoe sweep --db ");
}

/* The interrupted message without stdio: the counts, the database, the
 * command; cut at len - 1 bytes. */
Test(fm_text, an_interrupted_sweep_says_what_is_stored_and_how_to_resume) {
  char buf[512];
  size_t n = fm_text_sweep_interrupted(buf, sizeof buf, 12, 3, "x.db", "flexmoe sweep --x");
  buf[n] = '\0';
  cr_assert_str_eq(buf, "\nflexmoe sweep: interrupted: 12 point(s) computed by this sweep are "
                        "stored in x.db (3 were there before; points being computed are not "
                        "stored).\nThe same command resumes where it stopped:\n  flexmoe sweep "
                        "--x\n");
  char small[8];
  cr_assert_eq(fm_text_sweep_interrupted(small, sizeof small, 0, 0, "d", "c"), 7);
  cr_assert(memcmp(small, "\nflexmo", 7) == 0);
}

/* The bar fills in proportion to the points finished and ends its line
 * once all are. */
Test(fm_text, the_sweep_bar_fills_with_the_points_done) {
  fm_sweep_stats s = {.pending = 4, .done = 1, .failed = 1, .wall_s = 2.0};
  capture c;
  FILE *f = capture_open(&c);
  fm_text_sweep_bar(f, &s);
  s.done = 3;
  fm_text_sweep_bar(f, &s);
  char *text = capture_close(&c);
  cr_assert_str_eq(text, "\r[===============>              ] 2/4 points  2.0 s  eta 2 s  (failures) "
                         "\r[==============================] 4/4 points  2.0 s  eta 0 s  (failures) \n");
  free(text);
}
