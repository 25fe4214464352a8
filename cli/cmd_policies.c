/*
 * cmd_policies.c - flexmoe policies: the placement policies of the registry
 * with their parameters, defaults and help, as a table or one JSON document
 * {"policies": [{"name", "summary", "clairvoyant", "spec", "parameters":
 * [{"key", "default", "help"}]}]}.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "placement/pl_policy.h"

static const char help_head[] =
    "usage: flexmoe policies [--format table|json]\n"
    "\n"
    "Lists the placement policies and their parameters with defaults. A policy\n"
    "is given to sim, place, sweep, run and validate as NAME or\n"
    "NAME:key=value,key=value (unknown keys are refused).\n"
    "\n";
static const char help_tail[] =
    "\n"
    "example:\n"
    "  flexmoe policies\n"
    "  flexmoe place --trace traces/samples/gpt-l6-e32-top2-aux-200.npy --gpus 8 \\\n"
    "      --policy flexmoe:threshold=1.2,horizon=50,slots=6\n";

static int print_json(void) {
  json_t *root = json_object(), *list = json_array();
  int bad = !root || json_object_set_new(root, "policies", list);
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r && !bad; r++) {
    const pl_policy_ops *ops = *r;
    json_t *o = json_object(), *params = json_array();
    char spec[PL_SPEC_MAX + 1];
    size_t off = (size_t)snprintf(spec, sizeof(spec), "%s", ops->name);
    char sep = ':';
    for (const pl_param_desc *d = ops->params; d && d->key; d++) {
      json_t *p = json_object();
      bad |= json_object_set_new(p, "key", fm_json_string(d->key));
      bad |= json_object_set_new(p, "default", fm_json_string(d->defval));
      bad |= json_object_set_new(p, "help", fm_json_string(d->help));
      bad |= json_array_append_new(params, p);
      if (off < sizeof(spec))
        off += (size_t)snprintf(spec + off, sizeof(spec) - off, "%c%s=%s", sep, d->key,
                                d->defval);
      sep = ',';
    }
    bad |= off >= sizeof(spec); /* never a cut spec */
    bad |= json_object_set_new(o, "name", fm_json_string(ops->name));
    bad |= json_object_set_new(o, "summary", fm_json_string(ops->summary));
    bad |= json_object_set_new(o, "clairvoyant", json_boolean(ops->clairvoyant));
    bad |= json_object_set_new(o, "spec", fm_json_string(spec));
    bad |= json_object_set_new(o, "parameters", params);
    bad |= json_array_append_new(list, o);
  }
  if (bad) {
    json_decref(root);
    root = NULL;
  }
  return cli_json_print("policies", root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

static int print_table(void) {
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++) {
    const pl_policy_ops *ops = *r;
    printf("%s%s\n  %s\n", ops->name, ops->clairvoyant ? " (reads the iteration's own counts)" : "",
           ops->summary);
    if (!ops->params || !ops->params[0].key)
      printf("  (no parameters)\n");
    for (const pl_param_desc *d = ops->params; d && d->key; d++) {
      char kv[96];
      snprintf(kv, sizeof(kv), "%s=%s", d->key, d->defval);
      printf("    %-20s %s\n", kv, d->help);
    }
    printf("\n");
  }
  if (fflush(stdout))
    return cli_fail(CLI_EFAIL, "policies", "cannot write to stdout");
  return CLI_OK;
}

int cmd_policies(int argc, char **argv) {
  int fmt = CLI_FMT_TABLE;
  const cli_opt opts[] = {CLI_FORMAT_ROW(&fmt), {.kind = CLI_O_END}};
  int rc = cli_parse_opts("policies", argc, argv, opts, help_head, help_tail);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, "policies", "unexpected argument '%s'", argv[optind]);
  return fmt == CLI_FMT_JSON ? print_json() : print_table();
}
