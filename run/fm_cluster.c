/*
 * fm_cluster.c - clusters resolved and sized, described, and traffic
 * matrices run on them; the policy registry described (run/fm_cluster.h).
 * The sentences are the ones `flexmoe clusters` and `flexmoe net` have
 * always printed after "flexmoe CMD: ".
 */
#include "run/fm_cluster.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "placement/pl_policy.h"
#include "run/fm_config.h"
#include "run/fm_error.h"
#include "run/fm_json.h"

int fm_cluster_open(const char *name, long gpus, long nodes, long gpn, sim_cluster *cl,
                    char *em, size_t el) {
  int n = (int)nodes, k = (int)gpn;
  if (gpus && fm_cluster_size(name, gpus, n, k, &n, &k, em, el))
    return FM_EUSAGE;
  sim_errbuf err;
  if (sim_cluster_resolve(name, cl, &err) || sim_cluster_resize(cl, n, k, &err))
    return fm_fail(em, el, FM_EFAIL, "%s", err.msg);
  return FM_OK;
}

int fm_clusters_doc(const sim_cluster *cl, const char *const *names, int count, json_t **out,
                    char *em, size_t el) {
  json_t *arr = json_array();
  for (int i = 0; i < count; i++) {
    char buf[2048];
    if (sim_cluster_json(&cl[i], buf, sizeof(buf)) < 0) {
      json_decref(arr);
      return fm_fail(em, el, FM_EFAIL, "cluster description too long");
    }
    json_t *o = json_loads(buf, 0, NULL);
    if (!o) {
      json_decref(arr);
      return fm_fail(em, el, FM_EFAIL, "%s: cannot describe the cluster as JSON", names[i]);
    }
    json_object_set_new(o, "gpus", json_integer(sim_cluster_gpus(&cl[i])));
    json_object_set_new(o, "description", fm_json_string(cl[i].description));
    json_array_append_new(arr, o);
  }
  *out = json_pack("{s:o}", "clusters", arr);
  return FM_OK;
}

int fm_net_run(const char *cluster, const char *path, long gpus, long nodes, long gpn,
               fm_net_result *out, char *em, size_t el) {
  *out = (fm_net_result){.flows = NULL, .nflows = 0, .makespan_ns = 0};
  int rc = fm_cluster_open(cluster, gpus, nodes, gpn, &out->cluster, em, el);
  if (rc)
    return rc;
  sim_errbuf err;
  if (sim_flows_read(path, sim_cluster_gpus(&out->cluster), &out->flows, &out->nflows, &err))
    return fm_fail(em, el, FM_EFAIL, "%s", err.msg);
  if (sim_flows_run(&out->cluster, out->flows, out->nflows, &out->makespan_ns, &err))
    return fm_fail(em, el, FM_EFAIL, "%s: %s", path, err.msg);
  return FM_OK;
}

void fm_net_result_fini(fm_net_result *r) {
  if (!r)
    return;
  sim_free(r->flows);
  r->flows = NULL;
}

/* One policy: its name, summary, parameters and full default spec. */
static json_t *policy_doc(const pl_policy_ops *ops) {
  json_t *o = json_object(), *params = json_array();
  char spec[PL_SPEC_MAX + 1], sep = ':';
  size_t off = (size_t)snprintf(spec, sizeof(spec), "%s", ops->name);
  int bad = !o || !params;
  for (const pl_param_desc *d = ops->params; d && d->key && !bad; d++) {
    bad |= json_array_append_new(params, json_pack("{s:o, s:o, s:o}", "key",
                                                   fm_json_string(d->key), "default",
                                                   fm_json_string(d->defval), "help",
                                                   fm_json_string(d->help)));
    if (off < sizeof(spec))
      off += (size_t)snprintf(spec + off, sizeof(spec) - off, "%c%s=%s", sep, d->key, d->defval);
    sep = ',';
  }
  bad |= off >= sizeof(spec); /* never a cut spec */
  bad |= json_object_set_new(o, "name", fm_json_string(ops->name));
  bad |= json_object_set_new(o, "summary", fm_json_string(ops->summary));
  bad |= json_object_set_new(o, "clairvoyant", json_boolean(ops->clairvoyant));
  bad |= json_object_set_new(o, "spec", fm_json_string(spec));
  bad |= json_object_set_new(o, "parameters", params);
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *fm_policies_doc(void) {
  json_t *root = json_object(), *list = json_array();
  int bad = !root || json_object_set_new(root, "policies", list);
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r && !bad; r++)
    bad |= json_array_append_new(list, policy_doc(*r));
  if (bad) {
    json_decref(root);
    return NULL;
  }
  return root;
}
