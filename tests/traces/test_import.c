/* Importers and the file-level rescale: CSV, other axis orders, per-token
 * expert ids, excerpts; streaming rescale with exact totals. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "tr_testutil.h"
#include "traces/tr_import.h"
#include "traces/tr_rescale.h"
#include "traces/tr_sample.h"
#include "traces/tr_trace.h"

#define P(name) tu_path((char[512]){0}, 512, name)

static tr_trace open_ok(const char *p) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s: %s", p, err.msg);
  return t;
}

Test(import, csv_becomes_an_npy_with_the_same_counts_and_hash) {
  const char *c = P("in.csv");
  tu_text(c, "iteration,layer,rank,expert,tokens\n0,0,0,0,5\n1,1,1,2,7\n0,1,1,1,3\n");
  tr_trace t = open_ok(c);
  tr_error err;
  cr_assert_eq(tr_import_trace(&t, 0, -1, P("out.npy"), &t.meta, &err), TR_OK, "%s", err.msg);
  tr_trace u = open_ok(P("out.npy"));
  cr_assert_eq(u.hash, t.hash);
  cr_assert_eq(u.dtype, TR_INT32);
  cr_assert_eq(tr_at(&u, 1, 1, 1, 2), 7);
  tr_close(&t);
  tr_close(&u);
}

Test(import, an_iteration_range_cuts_an_excerpt) {
  tr_trace t = open_ok(tu_sample());
  tr_error err;
  cr_assert_eq(tr_import_trace(&t, 50, 60, P("cut.npy"), &t.meta, &err), TR_OK, "%s", err.msg);
  tr_trace u = open_ok(P("cut.npy"));
  cr_assert_eq(u.iterations, 10);
  cr_assert_eq(u.meta.top_k, 2);
  for (int e = 0; e < 32; e++)
    cr_assert_eq(tr_at(&u, 3, 4, 5, e), tr_at(&t, 53, 4, 5, e));
  tr_close(&t);
  tr_close(&u);
}

/* A [L, I, E, R] array with value = 1000 l + 100 i + 10 e + r. */
Test(import, axes_in_another_order_are_transposed) {
  int32_t d[2 * 3 * 4 * 5];
  int k = 0;
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < 3; i++)
      for (int e = 0; e < 4; e++)
        for (int r = 0; r < 5; r++)
          d[k++] = 1000 * l + 100 * i + 10 * e + r;
  const char *in = P("lier.npy");
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 4, 5), }", d,
         sizeof(d));
  tr_error err;
  const char *forms[] = {"LIER", "layer,iteration,expert,rank", "L,I,E,R",
                         "layers,iterations,experts,ranks"};
  for (int f = 0; f < 4; f++) {
    cr_assert_eq(tr_import_axes(in, forms[f], P("ilre.npy"), 0, &err), TR_OK, "%s: %s", forms[f],
                 err.msg);
    tr_trace t = open_ok(P("ilre.npy"));
    cr_assert_eq(t.iterations, 3);
    cr_assert_eq(t.layers, 2);
    cr_assert_eq(t.ranks, 5);
    cr_assert_eq(t.experts, 4);
    for (int i = 0; i < 3; i++)
      for (int l = 0; l < 2; l++)
        for (int r = 0; r < 5; r++)
          for (int e = 0; e < 4; e++)
            cr_assert_eq(tr_at(&t, i, l, r, e), 1000 * l + 100 * i + 10 * e + r);
    tr_close(&t);
  }
  /* three axes: no rank */
  const char *in3 = P("lie.npy");
  tu_npy(in3, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 4), }", d, 24 * 4);
  cr_assert_eq(tr_import_axes(in3, "L,I,E", P("ile.npy"), 0, &err), TR_OK, "%s", err.msg);
  tr_trace t = open_ok(P("ile.npy"));
  cr_assert_eq(t.ranks, 1);
  cr_assert_eq(tr_at(&t, 2, 1, 0, 3), d[1 * 12 + 2 * 4 + 3]);
  tr_close(&t);
}

Test(import, bad_axes_and_shapes_are_refused) {
  int32_t d[24] = {0};
  const char *in = P("x.npy");
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 4), }", d, sizeof(d));
  tr_error err;
  cr_assert_eq(tr_import_axes(in, "I,I,E", P("o.npy"), 0, &err), TR_EINVAL);
  cr_assert_eq(tr_import_axes(in, "I,L,Q", P("o.npy"), 0, &err), TR_EINVAL);
  cr_assert_eq(tr_import_axes(in, "I,L,R,E", P("o.npy"), 0, &err), TR_ESHAPE);
  cr_assert_str_eq(err.path, in);
  cr_assert_neq(access(P("o.npy"), F_OK), 0);
}

/* ids [I=2, L=1, R=2, T=3, k=2]; -1 = dropped. */
Test(import, per_token_expert_ids_become_counts) {
  int32_t ids[2][1][2][3][2] = {{{{{0, 1}, {1, 2}, {3, -1}}, {{0, 3}, {0, 1}, {2, 3}}}},
                                {{{{1, 0}, {1, 0}, {1, 0}}, {{3, 2}, {3, 2}, {-1, -1}}}}};
  const char *in = P("ids.npy");
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1, 2, 3, 2), }", ids,
         sizeof(ids));
  tr_error err;
  cr_assert_eq(tr_import_ids(in, 0, P("counts.npy"), 0, &err), TR_OK, "%s", err.msg);
  tr_trace t = open_ok(P("counts.npy"));
  cr_assert_eq(t.experts, 4);
  cr_assert_eq(t.ranks, 2);
  cr_assert_eq(t.meta.top_k, 2);
  cr_assert_eq(t.meta.tokens_per_rank, 3);
  int64_t want[2][2][4] = {{{1, 2, 1, 1}, {2, 1, 1, 2}}, {{3, 3, 0, 0}, {0, 0, 2, 2}}};
  for (int i = 0; i < 2; i++)
    for (int r = 0; r < 2; r++)
      for (int e = 0; e < 4; e++)
        cr_assert_eq(tr_at(&t, i, 0, r, e), want[i][r][e], "[%d][%d][%d]", i, r, e);
  tr_close(&t);
  cr_assert_eq(tr_import_ids(in, 8, P("counts8.npy"), 0, &err), TR_OK);
  t = open_ok(P("counts8.npy"));
  cr_assert_eq(t.experts, 8);
  tr_close(&t);
  cr_assert_eq(tr_import_ids(in, 3, P("counts3.npy"), 0, &err), TR_EFORMAT, "id 3 >= 3 experts");
  cr_assert_str_eq(err.path, in);
}

Test(import, rescaled_files_have_exact_totals_and_are_reproducible) {
  tr_trace t = open_ok(tu_sample());
  tr_meta m = t.meta;
  m.tokens_per_rank = 1000;
  tr_error err;
  cr_assert_eq(tr_rescale_write(&t, 0, 20, 12, 2000, 9, P("r1.npy"), &m, 0, &err), TR_OK, "%s",
               err.msg);
  cr_assert_eq(tr_rescale_write(&t, 0, 20, 12, 2000, 9, P("r2.npy"), &m, 0, &err), TR_OK);
  tr_trace a = open_ok(P("r1.npy")), b = open_ok(P("r2.npy"));
  cr_assert_eq(a.iterations, 20);
  cr_assert_eq(a.ranks, 12);
  cr_assert_eq(a.meta.tokens_per_rank, 1000);
  cr_assert_eq(a.hash, b.hash);
  int64_t out[12 * 32];
  for (int64_t it = 0; it < 20; it++)
    for (int l = 0; l < 6; l++) {
      tr_slice(&a, it, l, out);
      for (int g = 0; g < 12; g++) {
        int64_t s = 0;
        for (int e = 0; e < 32; e++)
          s += out[g * 32 + e];
        cr_assert_eq(s, 2000);
      }
    }
  /* a slice equals tr_rescale_slice of the same (iteration, layer) */
  int64_t direct[12 * 32];
  cr_assert_eq(tr_rescale_slice(&t, 7, 3, 12, 2000, 9, direct), TR_OK);
  tr_slice(&a, 7, 3, out);
  cr_assert_arr_eq(out, direct, sizeof(out));
  tr_close(&a);
  tr_close(&b);
  tr_close(&t);
}

/* The importers' output slice (R x E counts) comes from what the input
 * claims: an expert id near 10^6 makes it 16 MiB; refused over the budget
 * before it is allocated, and nothing is written. */
Test(import, slices_over_the_memory_budget_are_refused_with_their_size) {
  const char *in = P("ids-huge.npy");
  int32_t ids[2] = {3, 1000000};
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 1, 1), }", ids,
         sizeof(ids));
  tr_error err;
  cr_assert_eq(tr_import_ids(in, 0, P("c.npy"), (uint64_t)1 << 20, &err), TR_EBUDGET);
  cr_assert_str_eq(err.path, in);
  cr_assert(strstr(err.msg, "2 ranks x 1000001 experts needs 15.3 MiB") != NULL, "%s", err.msg);
  cr_assert_neq(access(P("c.npy"), F_OK), 0);
  cr_assert_eq(tr_import_ids(in, 0, P("c.npy"), (uint64_t)16 << 20, &err), TR_OK, "%s", err.msg);

  const char *ax = P("axes.npy");
  int32_t d[6] = {1, 2, 3, 4, 5, 6};
  tu_npy(ax, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 3), }", d, sizeof(d));
  cr_assert_eq(tr_import_axes(ax, "ILRE", P("a.npy"), 47, &err), TR_EBUDGET);
  cr_assert(strstr(err.msg, "2 ranks x 3 experts needs 48 bytes") != NULL, "%s", err.msg);
  cr_assert_eq(tr_import_axes(ax, "ILRE", P("a.npy"), 48, &err), TR_OK, "%s", err.msg);
}

Test(import, a_rescale_over_the_memory_budget_is_refused_with_its_size) {
  tr_trace t = open_ok(tu_sample());
  tr_error err;
  tr_meta m = t.meta;
  uint64_t need = tr_rescale_memory(&t, 1000);
  /* the slice, the source slice, the binomials' and the Poisson method's
   * tables (at its largest N for 32 experts, 16 x 32^2), the generators */
  cr_assert_eq(need, 1000 * 32 * 8 + 8 * 32 * 8 + 32 * sizeof(tr_binp) +
                         tr_mpois_memory(16 * 32 * 32, 32) + 125 * sizeof(tr_rng));
  cr_assert_gt(tr_mpois_memory(16 * 32 * 32, 32), 0);
  cr_assert_eq(tr_rescale_write(&t, 0, 2, 1000, 64, 1, P("r.npy"), &m, need - 1, &err),
               TR_EBUDGET);
  cr_assert(strstr(err.msg, "rescaling to 1000 GPUs x 32 experts needs") != NULL, "%s", err.msg);
  cr_assert_neq(access(P("r.npy"), F_OK), 0);
  cr_assert_eq(tr_rescale_write(&t, 0, 2, 1000, 64, 1, P("r.npy"), &m, need, &err), TR_OK, "%s",
               err.msg);
  tr_close(&t);
}

/* Per-token expert ids beyond the experts range, or more choices per token
 * than experts, are refused naming the range. */
Test(import, expert_ids_beyond_the_physical_range_are_refused_naming_it) {
  const char *in = P("ids-range.npy");
  int32_t ids[2] = {3, 1048576};
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 1, 1), }", ids,
         sizeof(ids));
  tr_error err;
  cr_assert_eq(tr_import_ids(in, 0, P("c.npy"), 0, &err), TR_EFORMAT);
  cr_assert(strstr(err.msg, "expert id 1048576 is out of range: ids go from 0 to 1048575") != NULL,
            "%s", err.msg);
  int32_t k3[3] = {0, 1, -1};
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 3), }", k3,
         sizeof(k3));
  cr_assert_eq(tr_import_ids(in, 0, P("c.npy"), 0, &err), TR_ESHAPE);
  cr_assert(strstr(err.msg, "3 expert choices per token but 2 experts") != NULL, "%s", err.msg);
  cr_assert_eq(tr_import_ids(in, 3, P("c.npy"), 0, &err), TR_OK, "%s", err.msg);
  static int32_t deep[4097];
  tu_npy(in, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4097, 1, 1), }", deep,
         sizeof(deep));
  cr_assert_eq(tr_import_axes(in, "LIE", P("c.npy"), 0, &err), TR_ESHAPE);
  cr_assert(strstr(err.msg, "4097 layers: layers must be between 1 and 4096") != NULL, "%s",
            err.msg);
}
