/*
 * fm_text.c - the results as text (fm_text.h): the commands' tables and
 * lines, moved here from the CLI unchanged, written on the caller's stream.
 */
#include "run/fm_text.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "run/fm_json.h"
#include "run/fm_table.h"
#include "sim/sim_flows.h"
#include "store/st_store.h"

/* A policy spec as a table label: pl_policy_label (the name and the
 * parameters off their defaults), else the name; returns buf. */
static const char *policy_label(const char *spec, char *buf, size_t len) {
  if (pl_policy_label(spec, buf, len) != PL_OK)
    snprintf(buf, len, "%.*s", (int)strcspn(spec, ":"), spec);
  return buf;
}

/* A column of the statistics tables: a number, "-" where it is not finite. */
#define STAT_COL(head_, width_, fmt_)                                                         \
  {.head = (head_), .width = (width_), .fmt = (fmt_), .sep = "  ", .nan = "-", .finite = 1}
#define LAYER_COL FM_COL("layer", 5, "%lld")

void fm_text_trace_header(FILE *out, const fm_trace_analysis *a) {
  const tr_trace *t = &a->trace;
  const tr_stats *s = &a->stats;
  char v[5][32];
  const tr_meta *m = &t->meta;
  fprintf(out, "trace     %s\n", t->path);
  fprintf(out, "shape     %" PRId64 " iterations x %d layers x %d ranks x %d experts (%s)\n",
          t->iterations, t->layers, t->ranks, t->experts, fm_trace_dtype_name(t->dtype));
  if (s->first != 0 || s->iterations != t->iterations)
    fprintf(out, "analysed  iterations %" PRId64 "..%" PRId64 "\n", s->first,
            s->first + s->iterations - 1);
  fprintf(out, "hash      xxh3:%016" PRIx64 "\n", t->hash);
  snprintf(v[0], 32, m->top_k ? "%d" : "-", m->top_k);
  snprintf(v[1], 32, m->d_model ? "%d" : "-", m->d_model);
  snprintf(v[2], 32, m->d_ff ? "%d" : "-", m->d_ff);
  snprintf(v[3], 32, m->tokens_per_rank ? "%" PRId64 : "-", m->tokens_per_rank);
  snprintf(v[4], 32, m->bytes_per_elem ? "%d" : "-", m->bytes_per_elem);
  fprintf(out, "model     top_k %s, d_model %s, d_ff %s, bytes/elem %s, tokens/rank %s\n", v[0],
          v[1], v[2], v[4], v[3]);
  if (m->source[0])
    fprintf(out, "source    %s\n", m->source);
  if (s->tokens_min == s->tokens_max)
    fprintf(out, "slots     %" PRId64 " per (iteration, layer), constant\n", s->tokens_min);
  else
    fprintf(out, "slots     per (iteration, layer): min %" PRId64 ", max %" PRId64 " (varies)\n",
            s->tokens_min, s->tokens_max);
}

/* Per layer: skew and change, in brief. */
void fm_text_trace_info(FILE *out, const tr_stats *s) {
  static const fm_col cols[] = {LAYER_COL, STAT_COL("max/mean p50", 12, "%.2f"),
                                 STAT_COL("max/mean p90", 12, "%.2f"),
                                 STAT_COL("change/step (L1)", 16, "%.3f"), FM_END_COL};
  fprintf(out, "\n");
  fm_table_head(out, cols, 0);
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    const fm_cell row[] = {FM_I(l), FM_F(x->max_mean_p50), FM_F(x->max_mean_p90),
                            FM_F(x->change[0])};
    fm_table_row(out, cols, row, 0);
  }
}

/* The distribution of the per-iteration lag-1 change, per layer: the mean
 * above hides that real routing changes in bursts. */
static void change_table(FILE *out, const tr_stats *s) {
  static const fm_col cols[] = {LAYER_COL, STAT_COL("p50", 6, "%.3f"), STAT_COL("p90", 6, "%.3f"),
                                 STAT_COL("p99", 6, "%.3f"), STAT_COL("p90/p50", 7, "%.2f"),
                                 FM_END_COL};
  fprintf(out, "\n       -- lag-1 change (L1) per iteration --\n");
  fm_table_head(out, cols, 0);
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    const fm_cell row[] = {
        FM_I(l), FM_F(x->change1_p50), FM_F(x->change1_p90), FM_F(x->change1_p99),
        FM_F(x->change1_p50 > 0 ? x->change1_p90 / x->change1_p50 : NAN)};
    fm_table_row(out, cols, row, 0);
  }
}

/* Per layer: skew, change at three lags, hot-set persistence, ranks. */
void fm_text_trace_stats(FILE *out, const tr_stats *s) {
  static const fm_col cols[] = {
      LAYER_COL, STAT_COL("max/mean p50", 12, "%.2f"), STAT_COL("p90", 5, "%.2f"),
      STAT_COL("gini", 5, "%.3f"), STAT_COL("entropy", 7, "%.3f"), STAT_COL("lag1", 5, "%.3f"),
      STAT_COL("lag10", 5, "%.3f"), STAT_COL("lag100", 6, "%.3f"), STAT_COL("lag1", 4, "%.2f"),
      STAT_COL("lag10", 5, "%.2f"), STAT_COL("L1div", 5, "%.3f"), STAT_COL("totcv", 5, "%.3f"),
      FM_END_COL};
  fprintf(out,
          "\n       ------------- skew -------------  --- change (L1) ---  hot %d set "
          "  --- ranks ---\n",
          s->hot);
  fm_table_head(out, cols, 0);
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    const fm_cell row[] = {
        FM_I(l), FM_F(x->max_mean_p50), FM_F(x->max_mean_p90), FM_F(x->gini),
        FM_F(x->entropy), FM_F(x->change[0]), FM_F(x->change[1]), FM_F(x->change[2]),
        FM_F(x->hot_persist[0]), FM_F(x->hot_persist[1]), FM_F(x->rank_divergence),
        FM_F(x->rank_total_cv)};
    fm_table_row(out, cols, row, 0);
  }
  change_table(out, s);
}

/* The fitted model f (written to path) as two tables: per layer, the
 * targets and what the fitted model reproduces (target, fitted, error of
 * four statistics); then the model's parameters (dynamics of the logits,
 * burst regimes and step spread). */
#define FIT_COLS(prec)                                                                        \
  {.width = 7, .fmt = prec, .sep = "  "}, {.width = 7, .fmt = prec},                          \
      {.width = 7, .fmt = "%+.1f%%"}
#define FIT_CELLS(t, g) FM_F(t), FM_F(g), FM_F(100 * ((g) / (t) - 1))

void fm_text_trace_fit(FILE *out, const tr_fit *f, const char *path) {
  static const fm_col fit[] = {LAYER_COL, FIT_COLS("%.2f"), FIT_COLS("%.4f"), FIT_COLS("%.4f"),
                                FIT_COLS("%.4f"), FM_END_COL};
  static const fm_col model[] = {
      LAYER_COL, {.head = "scale", .width = 6, .fmt = "%.3f", .sep = "  "},
      {.head = "innov", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "phi", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "psi", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "rank_s", .width = 6, .fmt = "%.3f", .sep = "  "},
      {.head = "enter", .width = 5, .fmt = "%.3f", .sep = "   "},
      {.head = "leave", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "ratio", .width = 5, .fmt = "%.2f", .sep = "  "},
      {.head = "share", .width = 5, .fmt = "%.2f", .sep = "  "},
      {.head = "sigma", .width = 5, .fmt = "%.3f", .sep = "  "}, FM_END_COL};
  fprintf(out,
          "fitted %s (%" PRId64 " iterations) -> %s; calibration %" PRId64
          " iterations, up to %d rounds\n\n",
          f->source, f->iterations, path, f->cal_iterations, f->rounds);
  fprintf(out, "       ---- max/mean p50 -----  -- lag-1 change p50 ---  -- lag-1 change p90 ---"
               "  -- L1 change lag 10 ---\nlayer");
  for (int k = 0; k < 4; k++)
    fprintf(out, "   target  fitted  error");
  fprintf(out, "\n");
  for (int l = 0; l < f->layers; l++) {
    const tr_fit_stats *t = &f->layer[l].target, *g = &f->layer[l].fitted;
    const fm_cell row[] = {
        FM_I(l), FIT_CELLS(t->max_mean_p50, g->max_mean_p50),
        FIT_CELLS(t->change1_p50, g->change1_p50), FIT_CELLS(t->change1_p90, g->change1_p90),
        FIT_CELLS(t->change10, g->change10)};
    fm_table_row(out, fit, row, 0);
  }
  fprintf(out, "\n       ------------ logits ------------  ---- burst regimes (ML) ----  steps\n");
  fm_table_head(out, model, 0);
  for (int l = 0; l < f->layers; l++) {
    const tr_fit_layer *x = &f->layer[l];
    double vol = x->vol_enter + x->vol_leave;
    const fm_cell row[] = {FM_I(l), FM_F(x->scale), FM_F(x->innov), FM_F(x->phi),
                            FM_F(x->psi), FM_F(x->rank_sigma), FM_F(x->vol_enter),
                            FM_F(x->vol_leave), FM_F(x->vol_ratio),
                            FM_F(vol > 0 ? x->vol_enter / vol : 0), FM_F(x->vol_sigma)};
    fm_table_row(out, model, row, 0);
  }
}

void fm_text_trace_gen(FILE *out, const fm_trace_gen_config *cfg, const fm_trace_gen *g) {
  fprintf(out,
          "wrote %s: %" PRId64 " iterations x %d layers x %d ranks x %d experts, top-%d, %" PRId64
          " tokens per rank, seed %" PRIu64 "\n",
          cfg->out, cfg->iterations, g->gen.layers, g->gen.ranks, g->gen.experts, g->gen.top_k,
          g->gen.tokens_per_rank, cfg->seed);
}

void fm_text_trace_rescale(FILE *out, const fm_trace_rescale_config *cfg,
                           const fm_trace_shape *w) {
  fprintf(out,
          "wrote %s: %" PRId64 " iterations x %d layers x %d GPUs x %d experts, %s slots "
          "per GPU, seed %" PRIu64 "\n",
          cfg->out, w->iterations, w->layers, cfg->gpus, w->experts,
          cfg->tokens_per_gpu > 0 ? "exact" : "source-rank", cfg->seed);
}

void fm_text_trace_import(FILE *out, const char *path, const fm_trace_shape *o) {
  fprintf(out, "wrote %s: %" PRId64 " iterations x %d layers x %d ranks x %d experts (%s)\n", path,
          o->iterations, o->layers, o->ranks, o->experts, fm_trace_dtype_name(o->dtype));
}

void fm_text_sim(FILE *out, const fm_sim_comparison *cmp, const char *trace, const char *engine,
                 const char *db) {
  /* comparisons are over effective time: dropping cannot look like speed */
  double ref = fm_sim_summary_of(cmp->out[cmp->static_idx])->effective_iteration_ms;
  const fm_sim_summary *s0 = fm_sim_summary_of(cmp->out[0]);
  fprintf(out, "trace %s, %lld iterations, cluster %s (%d GPUs), engine %s%s%s\n", trace,
          (long long)s0->iterations, s0->cluster, s0->gpus, engine, db ? ", results in " : "",
          db ? db : "");
  static const fm_col cols[] = {
      FM_COL("policy", -20, "%s"), FM_COL("iter_ms", 9, "%.3f"), FM_COL("eff_ms", 9, "%.3f"),
      {.head = "speedup", .width = 7, .fmt = "%.2fx", .nan = "-"}, FM_COL("bal_p50", 7, "%.2f"),
      FM_COL("bal_p90", 7, "%.2f"), FM_COL("migrated_MB", 12, "%.1f"),
      FM_COL("dropped", 9, "%lld"), {.head = "compute", .width = 8, .fmt = "%.3f", .sep = " | "},
      FM_COL("alltoall", 8, "%.3f"), FM_COL("allred", 8, "%.3f"), FM_COL("migrate", 8, "%.3f"),
      FM_COL("other", 8, "%.3f"), FM_END_COL};
  fm_table_head(out, cols, 0);
  for (int i = 0; i < cmp->n; i++) {
    const fm_sim_summary *s = fm_sim_summary_of(cmp->out[i]);
    /* %f prints an effective time of +INFINITY (all dropped) as "inf" */
    const fm_cell row[] = {
        FM_S(cmp->policies[i]), FM_F(s->mean_iteration_ms), FM_F(s->effective_iteration_ms),
        FM_F(fm_speedup(ref, s->effective_iteration_ms)), FM_F(s->balance_p50),
        FM_F(s->balance_p90), FM_F((double)s->migrated_bytes / 1048576.0),
        FM_I(s->dropped_tokens), FM_F(s->compute_ms), FM_F(s->alltoall_ms),
        FM_F(s->allreduce_ms), FM_F(s->migration_ms), FM_F(s->other_ms)};
    fm_table_row(out, cols, row, 0);
  }
  fprintf(out, "(times in ms per iteration; eff_ms = iter_ms / (1 - share of token slots\n"
               " dropped), inf if all are; speedup = static / policy in eff_ms, so dropping\n"
               " does not count as speed; balance = max/mean GPU load after routing, worst\n"
               " layer; policy parameters in full: --format json or flexmoe report)\n");
}

/* One layer shown as a table: balance, drops and moves, then per GPU its
 * load and experts (* replicated), then each move. */
static void place_layer(FILE *out, const fm_place_result *r, int i) {
  const fm_place_layer *lo = &r->layers[i];
  const pl_placement *p = &lo->placement;
  fprintf(out, "\nlayer %d: balance %.3f (max/mean GPU load after routing)", r->layer0 + i,
          lo->balance);
  if (lo->dropped)
    fprintf(out, ", %" PRId64 " token slots dropped", lo->dropped);
  fprintf(out, ", %d move%s%s\n", lo->nmoves, lo->nmoves == 1 ? "" : "s",
          lo->nmoves && lo->background ? " (background)" : "");
  /* the experts cell puts a space before each expert (a '*' after one with
   * several replicas), its head one before "experts" */
  static const fm_col cols[] = {{.head = "gpu", .width = 4, .fmt = "%lld", .sep = "  "},
                                 FM_COL("tokens", 10, "%lld"), FM_COL(" experts", 0, "%s"),
                                 FM_END_COL};
  fm_table_head(out, cols, 0);
  for (int g = 0; g < r->gpus; g++) {
    char *experts = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&experts, &len);
    for (int j = 0; f && j < p->nhost[g]; j++) {
      int e = p->host[(size_t)g * p->slots + j];
      fprintf(f, " %d%s", e, p->nrep[e] > 1 ? "*" : "");
    }
    if (f)
      fclose(f);
    fm_table_row(out, cols, (const fm_cell[]){FM_I(g), FM_I(lo->gpu_load[g]), FM_S(experts)}, 0);
    free(experts);
  }
  for (int k = 0; k < lo->nmoves; k++) {
    const pl_move *m = &lo->moves[k];
    if (m->kind == PL_MOVE_DROP)
      fprintf(out, "  move: drop expert %d on GPU %d\n", m->expert, m->from);
    else
      fprintf(out, "  move: %s expert %d GPU %d -> %d (%.1f MB)\n", fm_place_move_kind(m->kind),
              m->expert, m->from, m->to, (double)m->bytes / 1e6);
  }
  for (int k = 0; r->temporaries && k < lo->ntemps; k++)
    fprintf(out, "  temporary: expert %d GPU %d -> %d (weights, this iteration only)\n",
            lo->temps[k].expert, lo->temps[k].from, lo->temps[k].to);
}

void fm_text_place(FILE *out, const fm_place_result *r) {
  fprintf(out, "policy %s\n%s, iteration %" PRId64 ": %d GPUs (%d per node), %d slots per GPU\n",
          r->policy, r->trace, r->iteration, r->gpus, r->gpus_per_node, r->slots);
  for (int i = 0; i < r->nlayers; i++)
    place_layer(out, r, i);
  fprintf(out, "\n(* = replicated expert)\n");
}

void fm_text_replay_row(FILE *out, const fm_replay_output *o, int check_ok, int *header) {
  static const fm_col cols[] = {
      FM_COL("policy", -12, "%s"), FM_COL("iters", 6, "%lld"), FM_COL("mean_ms", 9, "%.3f"),
      FM_COL("dispatch", 9, "%.3f"), FM_COL("compute", 9, "%.3f"), FM_COL("combine", 9, "%.3f"),
      FM_COL("local", 9, "%.3f"), FM_COL("allreduce", 9, "%.3f"), FM_COL("migration", 9, "%.3f"),
      FM_COL("balance", 8, "%.3f"), FM_COL("moved_MiB", 10, "%.1f"), FM_END_COL};
  char sn[PL_SPEC_MAX + 1];
  const double *ph = o->phase_ms;
  const fm_cell row[] = {
      FM_S(policy_label(o->policy, sn, sizeof sn)), FM_I(o->iterations),
      FM_F(o->mean_iteration_ms), FM_F(ph[RT_PH_DISPATCH]), FM_F(ph[RT_PH_COMPUTE]),
      FM_F(ph[RT_PH_COMBINE]), FM_F(ph[RT_PH_LOCAL]), FM_F(ph[RT_PH_ALLREDUCE]),
      FM_F(ph[RT_PH_MIGRATION]), FM_F(o->balance_p50),
      FM_F((double)o->migrated_bytes / 1048576.0)};
  if (!(*header)++)
    fm_table_head(out, cols, 0);
  fm_table_row(out, cols, row, 0);
  if (o->checked)
    fprintf(out,
            "  check: out %.2e din %.2e grad %.2e (rel. L2), %" PRId64 " tokens, %" PRId64
            " missing, %d replicas, %d checksum mismatches: %s\n",
            o->check.out_err, o->check.din_err, o->check.grad_err, o->check.tokens_checked,
            o->check.tokens_missing, o->check.replicas_checked, o->check.checksum_mismatches,
            check_ok ? "ok" : "FAILED");
}

void fm_text_validate(FILE *out, const fm_validate_result *res) {
  fprintf(out, "validate: backend %s, predictor: %s\n", res->backend, res->predictor);
  static const fm_col cols[] = {
      FM_COL("policy", -12, "%s"), FM_COL("phase", -10, "%s"),
      FM_COL("predicted_ms", 12, "%.3f"), FM_COL("measured_ms", 12, "%.3f"),
      {.head = "error", .width = 9, .fmt = "%.1f%%", .nan = "n/a"}, FM_END_COL};
  fm_table_head(out, cols, 0);
  for (int p = 0; p < res->nruns; p++)
    for (int q = FM_V_N - 1; q >= 0; q--) {
      const fm_validate_run *r = &res->runs[p];
      char sn[PL_SPEC_MAX + 1];
      const fm_cell row[] = {
          FM_S(q == FM_V_TIME ? policy_label(r->policy, sn, sizeof sn) : ""),
          FM_S(fm_validate_phase_names[q]), FM_F(r->predicted[q]), FM_F(r->measured[q]),
          FM_F(100.0 * r->error[q])};
      fm_table_row(out, cols, row, 0);
    }
  fprintf(out,
          "median |error| of iteration time %.1f%%, p95 |error| over phases %.1f%%, ranking %s\n",
          100 * res->median_abs_error, 100 * res->p95_abs_error,
          res->ranking_agrees ? "agrees" : "DIFFERS");
}

void fm_text_calibration(FILE *out, const fm_calibrate_config *a, const fm_calibration *c) {
  const fm_profile *p = &c->profile;
  const rt_calib_result *res = &c->res;
  int d = p->d_model, f = p->d_ff, G = c->ranks; /* the model measured */
  fprintf(out, "calibrate: %s (%s), %d ranks, d_model %d, d_ff %d\n", p->name, p->device, G, d, f);
  static const fm_col ffn[] = {
      FM_COL("tokens", 8, "%lld"), FM_COL("fwd_us", 12, "%.2f"), FM_COL("bwd_us", 12, "%.2f"),
      FM_COL("bwd/fwd", 10, "%.2f"), FM_COL("fwd_GFLOP/s", 12, "%.1f"), FM_END_COL};
  static const fm_col exchange[] = {FM_COL("bytes/rank", 14, "%.0f"),
                                     FM_COL("alltoall_us", 12, "%.2f"),
                                     FM_END_COL};
  fm_table_head(out, ffn, 0);
  for (int i = 0; i < res->ntokens; i++) {
    double fl = 4.0 * (double)res->tokens[i] * d * f;
    const fm_cell row[] = {FM_I(res->tokens[i]), FM_F(res->fwd_us[i]), FM_F(res->bwd_us[i]),
                            FM_F(res->bwd_us[i] / res->fwd_us[i]),
                            FM_F(fl / res->fwd_us[i] * 1e-3)};
    fm_table_row(out, ffn, row, 0);
  }
  fprintf(out, "bwd_ratio %.3f (points >= 256 tokens)\n", res->bwd_ratio);
  fm_table_head(out, exchange, 0);
  for (int i = 0; i < res->nsizes; i++)
    fm_table_row(out, exchange, (const fm_cell[]){FM_F(res->x_bytes[i]), FM_F(res->x_us[i])}, 0);
  fprintf(
      out,
      "exchange %.1f GB/s per rank, latency %.2f us; local token movement %.2f us + %.4f us/row;"
      " launch %.2f us per kernel\n",
      res->exchange_GBps, res->exchange_latency_us, res->local_lat_us, res->local_us_per_row,
      res->launch_us);
  if (a->out_path) {
    char cpath[1024];
    fm_profile_cluster_path(a->out_path, cpath, sizeof cpath);
    fprintf(out, "wrote %s, %s and the .runtime.json beside them\n", a->out_path, cpath);
  }
}

void fm_text_clusters(FILE *out, const sim_cluster *cl, int count) {
  static const fm_col cols[] = {
      FM_COL("cluster", -14, "%s"), FM_COL("nodes", 5, "%lld"), FM_COL("gpn", 4, "%lld"),
      FM_COL("gpus", 4, "%lld"), FM_COL("profile", -7, "%s"), FM_COL("hbm_GiB", 7, "%.1f"),
      FM_COL("intra_GBps", 10, "%g"), FM_COL("intra_us", 8, "%g"), FM_COL("nic_GBps", 10, "%s"),
      FM_COL("inter_us", 8, "%g"), FM_COL("oversub", 7, "%g"),
      {.head = "description", .fmt = "%s", .sep = "  "}, FM_END_COL};
  fm_table_head(out, cols, 0);
  for (int i = 0; i < count; i++) {
    const sim_cluster *c = &cl[i];
    char nic[32];
    snprintf(nic, sizeof(nic), "%g%s", c->inter_GBps, c->nic_per_node ? "/node" : "");
    const fm_cell row[] = {
        FM_S(c->name), FM_I(c->nodes), FM_I(c->gpus_per_node), FM_I(sim_cluster_gpus(c)),
        FM_S(c->profile), FM_F(c->hbm_gib), FM_F(c->intra_GBps), FM_F(c->intra_lat_us),
        FM_S(nic), FM_F(c->inter_lat_us), FM_F(c->oversub), FM_S(c->description)};
    fm_table_row(out, cols, row, 0);
  }
}

static const fm_col flow_cols[] = {
    FM_COL("src", 6, "%lld"), FM_COL("dst", 6, "%lld"), FM_COL("bytes", 16, "%lld"),
    FM_COL("finish_us", 14, "%.3f"), FM_END_COL};

/* A flow's row of flow_cols. */
#define FLOW_CELLS(f)                                                                         \
  {FM_I((f)->src), FM_I((f)->dst), FM_I((f)->bytes), FM_F((double)(f)->finish_ns * 1e-3)}

void fm_text_flows(FILE *out, const fm_net_result *r) {
  const sim_cluster *cl = &r->cluster;
  fprintf(out, "cluster %s: %d nodes x %d GPUs, %d flows\n", cl->name, cl->nodes, cl->gpus_per_node,
          r->nflows);
  fm_table_head(out, flow_cols, 0);
  for (int i = 0; i < r->nflows; i++)
    fm_table_row(out, flow_cols, (const fm_cell[])FLOW_CELLS(&r->flows[i]), 0);
  fprintf(out, "makespan_us %.3f\n", (double)r->makespan_ns * 1e-3);
}

json_t *fm_net_flows_doc(const fm_net_result *r) {
  json_t *flows = json_array();
  int bad = !flows;
  for (int i = 0; i < r->nflows && !bad; i++)
    bad |= json_array_append_new(
        flows, fm_table_object(flow_cols, (const fm_cell[])FLOW_CELLS(&r->flows[i])));
  json_t *root = json_pack("{s:o, s:o}", "makespan_us",
                           fm_json_number((double)r->makespan_ns * 1e-3), "flows", flows);
  if (bad) {
    json_decref(root);
    root = NULL;
  }
  return root;
}

void fm_text_policies(FILE *out) {
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++) {
    const pl_policy_ops *ops = *r;
    fprintf(out, "%s%s\n  %s\n", ops->name,
            ops->clairvoyant ? " (reads the iteration's own counts)" : "", ops->summary);
    if (!ops->params || !ops->params[0].key)
      fprintf(out, "  (no parameters)\n");
    for (const pl_param_desc *d = ops->params; d && d->key; d++) {
      char kv[96];
      snprintf(kv, sizeof(kv), "%s=%s", d->key, d->defval);
      fprintf(out, "    %-20s %s\n", kv, d->help);
    }
    fprintf(out, "\n");
  }
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* The report's comparison as text, one block per configuration family. */
static const fm_col table_cols[] = {
    FM_COL("gpus", 5, "%s"),
    {.head = "policy", .width = -22, .fmt = "%s", .sep = "  "},
    FM_COL("runs", 4, "%lld"),
    FM_COL("iters", 6, "%lld"),
    FM_COL("mean_ms", 10, "%.3f"),
    FM_COL("eff_ms", 10, "%.3f"), /* "inf" when all are dropped */
    {.head = "speedup", .width = 8, .fmt = "%.2fx", .nan = "-"},
    {.head = "vs_oracle", .width = 9, .fmt = "%+.1f%%", .nan = "-"},
    FM_COL("compute", 8, "%.3f"),
    FM_COL("a2a", 8, "%.3f"),
    FM_COL("allreduce", 9, "%.3f"),
    FM_COL("migr", 7, "%.3f"),
    FM_COL("other", 7, "%.3f"),
    FM_COL("balance", 7, "%.2f"),
    FM_COL("dropped", 7, "%.1f%%"),
    FM_END_COL};

void fm_text_report(FILE *out, const char *db, const fm_report *rep) {
  const fm_report_row *rows = rep->rows;
  fprintf(out, "%s: %zu complete run%s\n", db, rep->nruns, rep->nruns == 1 ? "" : "s");
  for (size_t i = 0; i < rep->nrows; i++) {
    const fm_report_row *r = &rows[i];
    if (i == 0 || r->family != rows[i - 1].family) {
      fprintf(out, "\n%s runs, %s\n", r->first->kind, r->config);
      fm_table_head(out, table_cols, 0);
    }
    char name[sizeof r->first->policy], gpus[32];
    fm_report_short_name(rep, i, name, sizeof(name));
    fm_report_gpus_label(rep, i, gpus, sizeof(gpus));
    const fm_cell row[] = {
        FM_S(gpus), FM_S(name), FM_I(r->runs), FM_I(r->iterations), FM_F(r->mean_ms),
        FM_F(r->effective_ms), FM_F(r->speedup), FM_F(100 * r->oracle_gap),
        FM_F(r->compute_ms), FM_F(r->alltoall_ms), FM_F(r->allreduce_ms),
        FM_F(r->migration_ms), FM_F(r->other_ms), FM_F(r->balance),
        FM_F(r->total_tokens > 0 ? 100 * r->dropped_tokens / r->total_tokens : 0.0)};
    fm_table_row(out, table_cols, row, 0);
  }
  fprintf(
      out,
      "\n(times: mean ms per iteration; eff_ms = mean_ms / (1 - dropped), inf "
      "if all are dropped;\n speedup = static / policy and vs_oracle = policy / "
      "oracle - 1, both in eff_ms;\n vs_oracle is - for a policy that drops "
      "tokens (the oracle is dropless; an oracle with shadow=0 makes no\n per-iteration "
      "copies, so fastermoe's shadows and flexmoe's temporaries can go below it);\n dropped = share of token "
      "slots dropped (capacity); policies by name and the\n parameters that "
      "differ, in full: --format csv|json or --runs)\n");
}

/* The comparison as CSV: every row with its configuration, in full. */
#define CSV_COL(name_, fmt_) {.name = (name_), .fmt = (fmt_), .in = FM_IN_CSV}
static const fm_col csv_cols[] = {
    CSV_COL("kind", "%s"), CSV_COL("trace", "%s"), CSV_COL("cluster", "%s"),
    CSV_COL("engine", "%s"), CSV_COL("first_iteration", "%lld"),
    CSV_COL("end_iteration", "%lld"), CSV_COL("gpus", "%lld"), CSV_COL("policy", "%s"),
    CSV_COL("runs", "%lld"), CSV_COL("iterations", "%lld"),
    CSV_COL("mean_iteration_ms", "%.6f"), CSV_COL("speedup_vs_static", "%.6f"),
    CSV_COL("oracle_gap", "%.6f"), CSV_COL("compute_ms", "%.6f"),
    CSV_COL("alltoall_ms", "%.6f"), CSV_COL("allreduce_ms", "%.6f"),
    CSV_COL("migration_ms", "%.6f"), CSV_COL("other_ms", "%.6f"),
    CSV_COL("balance_mean", "%.6f"), CSV_COL("migrated_bytes", "%.0f"),
    CSV_COL("dropped_tokens", "%.0f"),
    CSV_COL("effective_iteration_ms", "%.6f"), /* "inf" when every slot is dropped */
    CSV_COL("seed", "%lld"), CSV_COL("gpus_per_node", "%lld"), CSV_COL("group", "%lld"),
    CSV_COL("config", "%s"), FM_END_COL};

void fm_text_report_csv(FILE *out, const fm_report *rep) {
  fm_table_head(out, csv_cols, 1);
  for (size_t i = 0; i < rep->nrows; i++) {
    const fm_report_row *r = &rep->rows[i];
    const st_run_summary *f = r->first;
    const fm_cell row[] = {
        FM_S(f->kind), FM_S(f->trace), FM_S(f->cluster), FM_S(f->engine),
        FM_I(f->it_first), FM_I(f->it_last + 1), FM_I(f->gpus), FM_S(f->policy),
        FM_I(r->runs), FM_I(r->iterations), FM_F(r->mean_ms), FM_F(r->speedup),
        FM_F(r->oracle_gap), FM_F(r->compute_ms), FM_F(r->alltoall_ms),
        FM_F(r->allreduce_ms), FM_F(r->migration_ms), FM_F(r->other_ms), FM_F(r->balance),
        FM_F(r->migrated_bytes), FM_F(r->dropped_tokens), FM_F(r->effective_ms),
        FM_I(f->seed), FM_I(f->gpus_per_node), FM_I(r->group), FM_S(r->config)};
    fm_table_row(out, csv_cols, row, 1);
  }
}

/* --runs: one line (or object) per stored run, in id order; the trace in
 * full in CSV and JSON, its base name last in the table. */
static const fm_col runs_cols[] = {
    FM_COL("id", 6, "%lld"), FM_COL("kind", -4, "%s"), FM_COL("policy", -22, "%s"),
    {.head = "cluster", .width = -12, .fmt = "%s", .key = FM_COL_KEY(CLUSTER)},
    {.head = "engine", .width = -9, .fmt = "%s", .key = FM_COL_KEY(ENGINE)},
    {.head = "gpus", .width = 5, .fmt = "%lld", .key = FM_COL_KEY(GPUS)},
    {.fmt = "%s", .key = FM_COL_KEY(TRACE), .in = FM_IN_CSV | FM_IN_JSON},
    {.fmt = "%lld", .key = FM_COL_KEY(SEED), .in = FM_IN_CSV | FM_IN_JSON},
    {.head = "iters", .width = 6, .fmt = "%lld", .name = "iterations"},
    {.head = "mean_ms", .width = 10, .fmt = "%.3f", .csv = "%.6f", .name = "mean_iteration_ms"},
    {.head = "eff_ms", .width = 10, .fmt = "%.3f", .csv = "%.6f", .name = "effective_iteration_ms"},
    {.head = "trace", .fmt = "%s", .sep = "  ", .in = FM_IN_TEXT},
    {.fmt = "%s", .name = "config_key", .in = FM_IN_JSON}, FM_END_COL};

/* A run's row of runs_cols. */
#define RUN_CELLS(r)                                                                          \
  {FM_I((r)->id), FM_S((r)->kind), FM_S((r)->policy), FM_S((r)->cluster), FM_S((r)->engine),  \
   FM_I((r)->gpus), FM_S((r)->trace), FM_I((r)->seed), FM_I((r)->iterations),                \
   FM_F((r)->mean_ms), FM_F((r)->effective_ms),                                               \
   FM_S((r)->trace[0] ? base_name((r)->trace) : "-"), FM_S((r)->config_key)}

void fm_text_report_runs(FILE *out, const st_run_summary *runs, size_t n, int csv) {
  fm_table_head(out, runs_cols, csv);
  for (size_t i = 0; i < n; i++)
    fm_table_row(out, runs_cols, (const fm_cell[])RUN_CELLS(&runs[i]), csv);
}

json_t *fm_report_runs_doc(const char *db, const st_run_summary *runs, size_t n) {
  json_t *arr = json_array();
  int bad = !arr;
  for (size_t i = 0; i < n && !bad; i++)
    bad |= json_array_append_new(arr,
                                 fm_table_object(runs_cols, (const fm_cell[])RUN_CELLS(&runs[i])));
  json_t *doc = bad ? NULL : json_pack("{s:o, s:o}", "database", fm_json_string(db), "runs", arr);
  if (bad)
    json_decref(arr);
  return doc;
}

void fm_text_sweep(FILE *out, const fm_sweep_config *c, const fm_sweep_stats *s) {
  fprintf(out,
          "sweep: %d grid points (%d trace%s x %d cluster%s x %d size%s x %d "
          "seed%s x %d polic%s)%s\n",
          s->unique, c->ntraces, c->ntraces == 1 ? "" : "s", c->nclusters,
          c->nclusters == 1 ? "" : "s", c->nsizes, c->nsizes == 1 ? "" : "s", c->nseeds,
          c->nseeds == 1 ? "" : "s", c->npolicies, c->npolicies == 1 ? "y" : "ies",
          s->unique < s->points ? " after removing duplicates" : "");
  fprintf(out, "  computed %d, already in %s %d, failed %d\n", s->done, c->db,
          s->skipped + s->elsewhere, s->failed);
  if (s->elsewhere)
    fprintf(out, "  (%d of them stored by another process while this sweep ran)\n", s->elsewhere);
  if (s->lost)
    fprintf(out,
            "  lost %d (not stored: listed on stderr; run the same command "
            "again to compute them)\n",
            s->lost);
  if (s->ranks > 1)
    fprintf(out, "  wall %.2f s on %d MPI ranks\n", s->wall_s, s->ranks);
  else
    fprintf(out, "  wall %.2f s with %d worker%s\n", s->wall_s, s->workers,
            s->workers == 1 ? "" : "s");
  fprintf(out, "results: flexmoe report --db %s\n", c->db);
}

void fm_text_sweep_bar(FILE *out, const fm_sweep_stats *s) {
  int n = s->done + s->failed + s->elsewhere, total = s->pending;
  int width = 30, fill = total ? n * width / total : width;
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[width] = '\0';
  double eta = n ? s->wall_s / n * (total - n) : 0;
  fprintf(out, "\r[%s] %d/%d points  %.1f s  eta %.0f s%s ", bar, n, total, s->wall_s, eta,
          s->failed ? "  (failures)" : "");
  if (n == total)
    fputc('\n', out);
}

void fm_text_sweep_lost(FILE *out, const fm_sweep *sw) {
  const char *label;
  int died, shown = 0;
  for (int i = 0; fm_sweep_lost(sw, i, &label, &died) == 0; i++)
    if (shown++ < 64)
      fprintf(out, "  %s%s\n", label, died ? " (its worker died)" : "");
  if (shown > 64)
    fprintf(out, "  ... and %d more\n", shown - 64);
}

/* Appends a decimal to buf at *at (no stdio: a signal handler calls it). */
static void put_num(char *buf, size_t len, size_t *at, long v) {
  char d[24];
  int n = 0;
  do
    d[n++] = (char)('0' + v % 10);
  while ((v /= 10) > 0 && n < 23);
  while (n > 0 && *at + 1 < len)
    buf[(*at)++] = d[--n];
}

static void put_str(char *buf, size_t len, size_t *at, const char *s) {
  while (*s && *at + 1 < len)
    buf[(*at)++] = *s++;
}

size_t fm_text_sweep_interrupted(char *msg, size_t len, long stored, long before, const char *db,
                                 const char *resume) {
  size_t at = 0;
  put_str(msg, len, &at, "\nflexmoe sweep: interrupted: ");
  put_num(msg, len, &at, stored);
  put_str(msg, len, &at, " point(s) computed by this sweep are stored in ");
  put_str(msg, len, &at, db);
  put_str(msg, len, &at, " (");
  put_num(msg, len, &at, before);
  put_str(msg, len, &at, " were there before; points being computed are not stored)."
                         "\nThe same command resumes where it stopped:\n  ");
  put_str(msg, len, &at, resume);
  put_str(msg, len, &at, "\n");
  return at;
}

void fm_text_shell_words(const char *prefix, int argc, char **argv, char *buf, size_t len) {
  size_t at = (size_t)snprintf(buf, len, "%s", prefix);
  for (int i = 0; i < argc && at < len; i++) {
    const char *w = argv[i];
    int plain = w[0] && strspn(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789_./:,=+-") == strlen(w);
    at += (size_t)snprintf(buf + at, len - at, plain ? " %s" : " '", w);
    for (const char *c = w; !plain && *c && at < len; c++)
      at += (size_t)snprintf(buf + at, len - at, *c == '\'' ? "'\\''" : "%c", *c);
    if (!plain && at < len)
      at += (size_t)snprintf(buf + at, len - at, "'");
  }
}
