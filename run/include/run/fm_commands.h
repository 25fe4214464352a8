/*
 * fm_commands.h - the table of commands: every command of `flexmoe` (and of
 * `flexmoe trace`) with its one-line summary and the prose of its --help,
 * the way run/fm_keys.h holds every key's flag and help.
 *
 * A command's --help is its usage text, one help entry per flag (the CLI's
 * flag rows, most of them keys of run/fm_keys.h), then its tail. A menu
 * (flexmoe itself, name "", and "trace") prints its usage, one line per
 * command under it ("  NAME  SUMMARY", the names padded to one column) and
 * its tail. The CLI prints from this table; the Python package lists it
 * (flexmoe.commands(), from fm_commands_json_text).
 *
 * Invariants: names unique; a menu's commands are the rows whose name is
 * the menu's name, a space and one word ("trace info"), or for "" one word;
 * every usage and tail ends with a newline. The table is only appended to
 * or edited in place. Owned by the run library authors (run/fm_commands.c).
 */
#ifndef FLEXMOE_RUN_FM_COMMANDS_H
#define FLEXMOE_RUN_FM_COMMANDS_H

#include <stdio.h>

typedef struct fm_command {
  const char *name;    /* "sim", "trace info"; "" for flexmoe itself */
  const char *summary; /* its line in the menu above it */
  const char *usage;   /* --help before the flags (a menu: before its list) */
  const char *tail;    /* --help after them (trace gen: fm_command_tail_print) */
} fm_command;

/* The row of the command name ("sim", "trace info", "" for flexmoe), or
 * NULL when there is none. */
const fm_command *fm_command_of(const char *name);

/* c's --help tail on out: its row's, after the generator's pattern list
 * for trace gen (traces/tr_gen.h tr_gen_patterns). */
void fm_command_tail_print(const fm_command *c, FILE *out);

/* The i-th command listed by the menu named menu ("" or "trace") in table
 * order, or NULL after the last. */
const fm_command *fm_command_in_menu(const char *menu, int i);

/* The menu's help on out: its usage, "  WORD SUMMARY" per command (the
 * words padded to the longest plus one), its tail. menu must name a row. */
void fm_command_menu_print(const char *menu, FILE *out);

/*
 * The table as JSON text (malloc'd, release with free / fm_free): a list of
 * {"name", "summary", "usage", "tail"} in table order (tail as
 * fm_command_tail_print writes it). NULL when out of
 * memory.
 */
char *fm_commands_json_text(void);

#endif
