/* Trace reading (.npy, CSV, sidecar) and writing: shapes, dtypes, every bad
 * input a user can hand us, round trips. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../require.h"
#include "tr_testutil.h"
#include "traces/tr_trace.h"
#include <xxhash.h>

#define P(name) tu_path((char[512]){0}, 512, name)

/* The error names the file (and the line for CSV). */
static void expect_err(const char *path, int code, long line) {
  tr_trace t;
  tr_error err;
  int rc = tr_open(&t, path, &err);
  cr_assert_eq(rc, code, "%s: expected %s, got %d (%s: %s)", path, tr_strerror(code), rc,
               tr_strerror(rc), err.msg);
  cr_assert_eq(err.code, code);
  cr_assert_str_eq(err.path, path);
  cr_assert_eq(err.line, line, "line %ld, expected %ld (%s)", err.line, line, err.msg);
  cr_assert(strlen(err.msg) > 5, "message is empty");
  cr_assert_eq(t.data, NULL, "trace is zeroed on error");
  cr_assert_eq(t.map, NULL);
}

Test(trace, bundled_sample_opens_with_shape_and_model_metadata) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, tu_sample(), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.iterations, 200);
  cr_assert_eq(t.layers, 6);
  cr_assert_eq(t.ranks, 8);
  cr_assert_eq(t.experts, 32);
  cr_assert_eq(t.dtype, TR_INT32);
  cr_assert_eq(t.meta.top_k, 2);
  cr_assert_eq(t.meta.d_model, 384);
  cr_assert_eq(t.meta.d_ff, 768);
  cr_assert_eq(t.meta.tokens_per_rank, 2048);
  cr_assert(strstr(t.meta.source, "gpt-l6-e32-top2-aux.npy") != NULL, "%s", t.meta.source);
  /* 64 sequences x 256 tokens x top-2 per (iteration, layer). */
  for (int64_t it = 0; it < t.iterations; it += 37)
    for (int l = 0; l < t.layers; l++)
      cr_assert_eq(tr_slice_total(&t, it, l), 32768);
  int64_t s[8 * 32];
  tr_slice(&t, 199, 5, s);
  for (int r = 0; r < 8; r++)
    for (int e = 0; e < 32; e++)
      cr_assert_eq(s[r * 32 + e], tr_at(&t, 199, 5, r, e));
  tr_close(&t);
  tr_close(&t); /* idempotent */
  tr_close(NULL);
}

Test(trace, bundled_sample_is_the_first_200_iterations_of_the_real_trace) {
  const char *real = tu_real("gpt-l6-e32-top2-aux");
  if (!real)
    fm_skip("real-traces", "../shared/traces/real not present");
  tr_trace a, b;
  tr_error err;
  cr_assert_eq(tr_open(&a, tu_sample(), &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&b, real, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(b.iterations, 908);
  cr_assert_eq(b.meta.tokens_per_rank, 2048, "batch x seq / ranks from the recorder's keys");
  cr_assert_eq(b.meta.d_ff, 768, "expert_hidden is d_ff");
  int64_t x[256], y[256];
  for (int64_t it = 0; it < 200; it++)
    for (int l = 0; l < 6; l++) {
      tr_slice(&a, it, l, x);
      tr_slice(&b, it, l, y);
      cr_assert_arr_eq(x, y, sizeof(x));
    }
  tr_close(&a);
  tr_close(&b);
}

Test(trace, missing_file_is_enoent_naming_the_file) {
  expect_err(P("nope.npy"), TR_ENOENT, 0);
  expect_err(P("nope.csv"), TR_ENOENT, 0);
}

Test(trace, unknown_extension_is_a_format_error) {
  const char *p = P("trace.txt");
  tu_text(p, "1,2,3\n");
  expect_err(p, TR_EFORMAT, 0);
}

Test(trace, empty_files_are_eempty) {
  const char *n = P("empty.npy"), *c = P("empty.csv");
  tu_text(n, "");
  tu_text(c, "");
  expect_err(n, TR_EEMPTY, 0);
  expect_err(c, TR_EEMPTY, 0);
  const char *h = P("header-only.csv");
  tu_text(h, "iteration,layer,rank,expert,tokens\n");
  expect_err(h, TR_EEMPTY, 0);
}

Test(trace, truncated_npy_data_is_etrunc) {
  int32_t d[2 * 1 * 2 * 3] = {0};
  const char *p = P("trunc.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1, 2, 3), }", d,
         sizeof(d) - 4);
  expect_err(p, TR_ETRUNC, 0);
}

Test(trace, truncated_npy_header_is_etrunc) {
  const char *p = P("trunc-header.npy");
  tu_write(p, "\x93NUMPY\x01\x00\x76\x00{'descr'", 17);
  expect_err(p, TR_ETRUNC, 0);
  const char *q = P("trunc-magic.npy");
  tu_write(q, "\x93NUM", 4);
  expect_err(q, TR_ETRUNC, 0);
}

Test(trace, not_a_numpy_file_is_eformat) {
  const char *p = P("text.npy");
  tu_text(p, "iteration,layer,rank,expert,tokens\n0,0,0,0,1\n");
  expect_err(p, TR_EFORMAT, 0);
}

Test(trace, unsupported_dtypes_are_edtype) {
  float f[4] = {1, 2, 3, 4};
  const char *p = P("float.npy");
  tu_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 4), }", f,
         sizeof(f));
  expect_err(p, TR_EDTYPE, 0);
  tr_trace t;
  tr_error err;
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "<f4") != NULL, "names the dtype: %s", err.msg);

  int32_t d[4] = {0};
  const char *q = P("bigendian.npy");
  tu_npy(q, 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (1, 1, 1, 4), }", d,
         sizeof(d));
  expect_err(q, TR_EDTYPE, 0);
  tr_open(&t, q, &err);
  cr_assert(strstr(err.msg, "big-endian") != NULL, "%s", err.msg);

  const char *u = P("uint8.npy");
  tu_npy(u, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1, 4), }", d, 4);
  expect_err(u, TR_EDTYPE, 0);
}

Test(trace, fortran_order_is_refused_with_a_hint) {
  int32_t d[4] = {0};
  const char *p = P("fortran.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': True, 'shape': (1, 1, 1, 4), }", d,
         sizeof(d));
  expect_err(p, TR_EFORMAT, 0);
  tr_trace t;
  tr_error err;
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "Fortran") != NULL, "%s", err.msg);
}

Test(trace, bad_shapes_are_eshape_and_zero_iterations_eempty) {
  int32_t d[8] = {0};
  const char *p = P("2d.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 4), }", d, sizeof(d));
  expect_err(p, TR_ESHAPE, 0);
  const char *q = P("5d.npy");
  tu_npy(q, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 2, 2), }", d,
         sizeof(d));
  expect_err(q, TR_ESHAPE, 0);
  const char *z = P("zero-experts.npy");
  tu_npy(z, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1, 0), }", d, 0);
  expect_err(z, TR_ESHAPE, 0);
  const char *e = P("zero-iterations.npy");
  tu_npy(e, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (0, 1, 1, 4), }", d, 0);
  expect_err(e, TR_EEMPTY, 0);
}

Test(trace, trailing_bytes_after_the_data_are_refused) {
  int32_t d[5] = {1, 2, 3, 4, 5};
  const char *p = P("trailing.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1, 4), }", d,
         sizeof(d));
  expect_err(p, TR_EFORMAT, 0);
}

Test(trace, three_dimensional_arrays_are_one_rank) {
  int32_t d[2 * 3 * 4];
  for (int i = 0; i < 24; i++)
    d[i] = i;
  const char *p = P("ile.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 4), }", d, sizeof(d));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.iterations, 2);
  cr_assert_eq(t.layers, 3);
  cr_assert_eq(t.ranks, 1);
  cr_assert_eq(t.experts, 4);
  cr_assert_eq(tr_at(&t, 1, 2, 0, 3), 23);
  cr_assert_eq(tr_at(&t, 0, 1, 0, 0), 4);
  tr_close(&t);
}

Test(trace, int64_uint16_and_version_2_headers_are_read) {
  int64_t a[4] = {0, 5, (int64_t)1 << 40, 7};
  const char *p = P("i8.npy");
  tu_npy(p, 2, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 2, 2), }", a,
         sizeof(a));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.dtype, TR_INT64);
  cr_assert_eq(tr_at(&t, 0, 0, 1, 0), (int64_t)1 << 40);
  cr_assert_eq(tr_slice_total(&t, 0, 0), ((int64_t)1 << 40) + 12);
  tr_close(&t);

  uint16_t u[4] = {65535, 1, 2, 3};
  const char *q = P("u2.npy");
  tu_npy(q, 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (1, 1, 1, 4), }", u,
         sizeof(u));
  cr_assert_eq(tr_open(&t, q, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.dtype, TR_UINT16);
  cr_assert_eq(tr_at(&t, 0, 0, 0, 0), 65535);
  tr_close(&t);
}

Test(trace, negative_count_in_npy_is_eneg_with_its_position) {
  int32_t d[4] = {1, 2, -3, 4};
  const char *p = P("neg.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 2), }", d,
         sizeof(d));
  expect_err(p, TR_ENEG, 0);
  tr_trace t;
  tr_error err;
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "rank 1, expert 0") != NULL, "%s", err.msg);
}

Test(trace, npy_slice_whose_total_overflows_is_eoverflow) {
  int64_t d[2] = {INT64_MAX, 1};
  const char *p = P("sum-overflow.npy");
  tu_npy(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 1, 2), }", d,
         sizeof(d));
  expect_err(p, TR_EOVERFLOW, 0);
}

Test(trace, malformed_sidecar_is_emeta_naming_the_sidecar_and_line) {
  int32_t d[4] = {1, 2, 3, 4};
  const char *p = P("side.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1, 4), }", d,
         sizeof(d));
  const char *s = P("side.json");
  tu_text(s, "{\n  \"top_k\": 2,\n  \"d_model\": ,\n}\n");
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, p, &err), TR_EMETA);
  cr_assert_str_eq(err.path, s);
  cr_assert_eq(err.line, 3);
  tu_text(s, "{\"top_k\": \"two\"}");
  cr_assert_eq(tr_open(&t, p, &err), TR_EMETA);
  cr_assert_str_eq(err.path, s);
  cr_assert(strstr(err.msg, "top_k") != NULL, "%s", err.msg);
  tu_text(s, "{\"experts\": 8}");
  cr_assert_eq(tr_open(&t, p, &err), TR_EMETA, "shape disagrees with the array");
  cr_assert(strstr(err.msg, "experts") != NULL, "%s", err.msg);
  tu_text(s, "[1, 2]");
  cr_assert_eq(tr_open(&t, p, &err), TR_EMETA);
  tu_text(s, "{\"top_k\": 1, \"d_model\": 64, \"d_ff\": 256, \"bytes_per_elem\": 2, "
             "\"tokens_per_rank\": 5, \"source\": \"unit test\", \"unknown\": [1]}");
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.meta.top_k, 1);
  cr_assert_eq(t.meta.d_model, 64);
  cr_assert_eq(t.meta.d_ff, 256);
  cr_assert_eq(t.meta.bytes_per_elem, 2);
  cr_assert_eq(t.meta.tokens_per_rank, 5);
  cr_assert_str_eq(t.meta.source, "unit test");
  tr_close(&t);
}

Test(trace, csv_dimensions_are_max_index_plus_one_and_missing_cells_zero) {
  const char *p = P("long.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n"
             "0,0,0,0,5\n"
             "\n"
             "1, 1, 2, 3, 7\r\n"
             "1,1,2,3,1\n" /* repeated cells add up */
             "0,1,0,2,4\n");
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.iterations, 2);
  cr_assert_eq(t.layers, 2);
  cr_assert_eq(t.ranks, 3);
  cr_assert_eq(t.experts, 4);
  cr_assert_eq(tr_at(&t, 0, 0, 0, 0), 5);
  cr_assert_eq(tr_at(&t, 1, 1, 2, 3), 8);
  cr_assert_eq(tr_at(&t, 0, 1, 0, 2), 4);
  cr_assert_eq(tr_at(&t, 1, 0, 1, 1), 0);
  cr_assert_eq(tr_slice_total(&t, 1, 1), 8);
  tr_close(&t);
}

Test(trace, csv_bad_header_is_eformat_on_line_1) {
  const char *p = P("hdr.csv");
  tu_text(p, "it,layer,rank,expert,count\n0,0,0,0,1\n");
  expect_err(p, TR_EFORMAT, 1);
}

Test(trace, csv_malformed_lines_are_eformat_with_line_number) {
  static const char *bad[] = {"0,0,0,1\n", "0,0,0,0,1,9\n", "0,0,x,0,1\n", "0,0,0,0,1.5\n",
                              "0,0,0,0,\n", "0,-1,0,0,3\n", "0,0,0,99999999999,1\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text), "iteration,layer,rank,expert,tokens\n0,0,0,0,1\n1,0,0,0,2\n%s",
             bad[i]);
    const char *p = P("malformed.csv");
    tu_text(p, text);
    expect_err(p, TR_EFORMAT, 4);
  }
}

Test(trace, csv_negative_count_is_eneg_with_line_number) {
  const char *p = P("neg.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n0,0,0,0,1\n0,0,0,1,-5\n");
  expect_err(p, TR_ENEG, 3);
  tr_trace t;
  tr_error err;
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "-5") != NULL, "%s", err.msg);
}

Test(trace, csv_count_overflowing_int64_is_eoverflow_with_line_number) {
  const char *p = P("big.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n0,0,0,0,1\n"
             "0,0,0,1,99999999999999999999\n");
  expect_err(p, TR_EOVERFLOW, 3);
}

Test(trace, csv_counts_whose_sum_overflows_are_eoverflow_on_the_line_that_overflows) {
  const char *p = P("sum.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n"
             "0,0,0,0,9223372036854775807\n"
             "0,0,1,0,0\n"
             "0,0,1,1,1\n");
  expect_err(p, TR_EOVERFLOW, 4);
  const char *q = P("cell-sum.csv");
  tu_text(q, "iteration,layer,rank,expert,tokens\n"
             "0,0,0,0,9223372036854775000\n"
             "0,0,0,0,1000\n");
  expect_err(q, TR_EOVERFLOW, 3);
}

Test(trace, content_hash_depends_on_counts_not_on_format) {
  int32_t d[4] = {1, 0, 3, 4};
  const char *n = P("h.npy"), *c = P("h.csv");
  tu_npy(n, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 2), }", d,
         sizeof(d));
  tu_text(c, "iteration,layer,rank,expert,tokens\n0,0,0,0,1\n0,0,1,0,3\n0,0,1,1,4\n");
  tr_trace a, b;
  tr_error err;
  cr_assert_eq(tr_open(&a, n, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_open(&b, c, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(a.hash, b.hash);
  tr_close(&b);
  tu_text(c, "iteration,layer,rank,expert,tokens\n0,0,0,0,1\n0,0,1,0,3\n0,0,1,1,5\n");
  cr_assert_eq(tr_open(&b, c, &err), TR_OK, "%s", err.msg);
  cr_assert_neq(a.hash, b.hash);
  tr_close(&a);
  tr_close(&b);
}

/* The hash's definition, checked against a one-shot XXH3 of the bytes it
 * is defined over: int32, int64 and uint16 files, slices longer than the
 * scan's 4,096-count chunks, and counts >= 2^51 (the element-wise path). */
static uint64_t reference_hash(const int64_t shape[4], const int64_t *c, size_t n) {
  uint64_t *b = malloc((4 + n) * sizeof(uint64_t));
  for (int i = 0; i < 4; i++)
    b[i] = (uint64_t)shape[i];
  memcpy(b + 4, c, n * sizeof(int64_t));
  uint64_t h = XXH3_64bits(b, (4 + n) * sizeof(uint64_t));
  free(b);
  return h;
}

Test(trace, content_hash_is_xxh3_of_the_shape_and_the_counts_as_int64) {
  enum { I = 2, L = 2, R = 3, E = 2000, N = I * L * R * E };
  static int64_t c[N];
  static int32_t c32[N];
  static uint16_t c16[N];
  for (int i = 0; i < N; i++) {
    c[i] = (i * 7919) % 60000;
    c32[i] = (int32_t)c[i];
    c16[i] = (uint16_t)c[i];
  }
  const int64_t shape[4] = {I, L, R, E};
  uint64_t want = reference_hash(shape, c, N);
  const char *p32 = P("x32.npy"), *p64 = P("x64.npy"), *p16 = P("x16.npy");
  const char *dict = "'fortran_order': False, 'shape': (2, 2, 3, 2000), }";
  char d[128];
  snprintf(d, sizeof(d), "{'descr': '<i4', %s", dict);
  tu_npy(p32, 1, d, c32, sizeof(c32));
  snprintf(d, sizeof(d), "{'descr': '<i8', %s", dict);
  tu_npy(p64, 1, d, c, sizeof(c));
  snprintf(d, sizeof(d), "{'descr': '<u2', %s", dict);
  tu_npy(p16, 1, d, c16, sizeof(c16));
  const char *paths[] = {p32, p64, p16};
  for (int i = 0; i < 3; i++) {
    tr_trace t;
    tr_error err;
    cr_assert_eq(tr_open(&t, paths[i], &err), TR_OK, "%s", err.msg);
    cr_assert_eq(t.hash, want, "%s", paths[i]);
    tr_close(&t);
  }
  /* counts of 2^51 and more: the element-wise path, same definition */
  int64_t big[4] = {(int64_t)1 << 62, 5, ((int64_t)1 << 62) - 6, 0};
  const int64_t bshape[4] = {1, 1, 2, 2};
  const char *pb = P("big.npy");
  tu_npy(pb, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 2, 2), }", big,
         sizeof(big));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, pb, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.hash, reference_hash(bshape, big, 4));
  tr_close(&t);
}

/* A slice total that overflows only across two of the scan's chunks. */
Test(trace, overflow_across_scan_chunks_is_eoverflow) {
  enum { N = 4097 };
  static int64_t d[N];
  for (int i = 0; i < N; i++)
    d[i] = ((int64_t)1 << 51) - 1; /* below the element-wise threshold */
  const char *p = P("chunks.npy");
  tu_npy(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 1, 4097), }", d,
         sizeof(d));
  expect_err(p, TR_EOVERFLOW, 0);
  d[N - 1] = INT64_MAX - 4096 * (((int64_t)1 << 51) - 1); /* total INT64_MAX */
  tu_npy(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 1, 4097), }", d,
         sizeof(d));
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "a total of exactly INT64_MAX fits: %s", err.msg);
  tr_close(&t);
}

Test(writer, round_trip_keeps_counts_shape_and_metadata) {
  int64_t c[2 * 3 * 2 * 5];
  for (int i = 0; i < 60; i++)
    c[i] = (i * 7919) % 101;
  tr_meta m = {.top_k = 2, .d_model = 512, .d_ff = 2048, .bytes_per_elem = 2,
               .tokens_per_rank = 1000};
  snprintf(m.source, sizeof(m.source), "round trip \"quoted\"");
  const char *p = P("rt.npy");
  tr_error err;
  cr_assert_eq(tr_write_npy(p, c, 2, 3, 2, 5, &m, &err), TR_OK, "%s", err.msg);
  tr_trace t;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.iterations, 2);
  cr_assert_eq(t.layers, 3);
  cr_assert_eq(t.ranks, 2);
  cr_assert_eq(t.experts, 5);
  cr_assert_eq(t.dtype, TR_INT32);
  int64_t s[10];
  for (int it = 0; it < 2; it++)
    for (int l = 0; l < 3; l++) {
      tr_slice(&t, it, l, s);
      cr_assert_arr_eq(s, c + (it * 3 + l) * 10, sizeof(s));
    }
  cr_assert_eq(t.meta.top_k, 2);
  cr_assert_eq(t.meta.d_model, 512);
  cr_assert_eq(t.meta.d_ff, 2048);
  cr_assert_eq(t.meta.bytes_per_elem, 2);
  cr_assert_eq(t.meta.tokens_per_rank, 1000);
  cr_assert_str_eq(t.meta.source, "round trip \"quoted\"");
  tr_close(&t);
}

Test(writer, the_bundled_sample_rewrites_to_identical_bytes) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, tu_sample(), &err), TR_OK, "%s", err.msg);
  size_t n = (size_t)t.iterations * t.layers * t.ranks * t.experts;
  int64_t *c = malloc(n * sizeof(int64_t));
  for (int64_t it = 0; it < t.iterations; it++)
    for (int l = 0; l < t.layers; l++)
      tr_slice(&t, it, l, c + ((size_t)it * t.layers + l) * t.ranks * t.experts);
  const char *p = P("sample-copy.npy");
  cr_assert_eq(tr_write_npy(p, c, t.iterations, t.layers, t.ranks, t.experts, NULL, &err),
               TR_OK, "%s", err.msg);
  tr_trace u;
  cr_assert_eq(tr_open(&u, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(u.hash, t.hash);
  cr_assert_eq(u.map_len, t.map_len, "same header size and data as NumPy wrote");
  cr_assert_eq(memcmp(u.map, t.map, t.map_len), 0);
  free(c);
  tr_close(&u);
  tr_close(&t);
}

Test(writer, large_counts_switch_to_int64) {
  int64_t c[2] = {(int64_t)INT32_MAX + 1, 3};
  const char *p = P("wide.npy");
  tr_error err;
  cr_assert_eq(tr_write_npy(p, c, 1, 1, 1, 2, NULL, &err), TR_OK, "%s", err.msg);
  tr_trace t;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.dtype, TR_INT64);
  cr_assert_eq(tr_at(&t, 0, 0, 0, 0), (int64_t)INT32_MAX + 1);
  tr_close(&t);
}

Test(writer, failures_leave_no_file_behind) {
  int64_t c[2] = {1, -1};
  const char *p = P("neg-out.npy");
  tr_error err;
  cr_assert_eq(tr_write_npy(p, c, 1, 1, 1, 2, NULL, &err), TR_ENEG);
  cr_assert_neq(access(p, F_OK), 0);
  c[1] = 1;
  const char *q = P("no/such/dir/out.npy");
  cr_assert_eq(tr_write_npy(q, c, 1, 1, 1, 2, NULL, &err), TR_EWRITE);
  cr_assert_str_eq(err.path, q);
  /* A stream that stops early is not committed, and its temp files go. */
  tr_writer w;
  const char *r = P("partial.npy");
  tr_meta m = {.top_k = 1};
  cr_assert_eq(tr_writer_open(&w, r, 2, 1, 1, 2, TR_INT32, &m, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_writer_put(&w, c, &err), TR_OK);
  cr_assert_eq(tr_writer_commit(&w, &err), TR_EINVAL);
  cr_assert_neq(access(r, F_OK), 0);
  cr_assert_neq(access(P("partial.json"), F_OK), 0);
  /* A count too large for the dtype aborts the stream. */
  int64_t big[2] = {(int64_t)INT32_MAX + 1, 0};
  cr_assert_eq(tr_writer_open(&w, r, 1, 1, 1, 2, TR_INT32, NULL, &err), TR_OK);
  cr_assert_eq(tr_writer_put(&w, big, &err), TR_EOVERFLOW);
  tr_writer_abort(&w);
  cr_assert_neq(access(r, F_OK), 0);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp", tu_dir());
  cr_assert_neq(system(cmd), 0, "temporary files were removed");
}

Test(writer, replacing_a_trace_without_metadata_drops_its_old_sidecar) {
  int64_t c[2] = {1, 2};
  const char *p = P("replace.npy");
  tr_meta m = {.top_k = 2};
  tr_error err;
  cr_assert_eq(tr_write_npy(p, c, 1, 1, 1, 2, &m, &err), TR_OK);
  cr_assert_eq(access(P("replace.json"), F_OK), 0);
  cr_assert_eq(tr_write_npy(p, c, 1, 1, 1, 2, NULL, &err), TR_OK);
  cr_assert_neq(access(P("replace.json"), F_OK), 0);
}

/* Mutated headers and data never crash the reader: every open either
 * succeeds or fails with a code, the file's path and a one-line message. */
Test(trace, corrupted_files_fail_cleanly) {
  FILE *fp = fopen(tu_sample(), "rb");
  cr_assert_not_null(fp);
  static unsigned char src[128 + 3 * 6 * 8 * 32 * 4];
  cr_assert_eq(fread(src, 1, sizeof(src), fp), sizeof(src));
  fclose(fp);
  char *shape = strstr((char *)src + 10, "(200,");
  cr_assert_not_null(shape);
  memcpy(shape, "(3,  ", 5); /* a valid 3-iteration file to corrupt */
  const char *p = P("fuzz.npy");
  unsigned seed = 12345;
  int ok = 0, failed = 0;
  for (int round = 0; round < 400; round++) {
    static unsigned char b[sizeof(src)];
    memcpy(b, src, sizeof(src));
    size_t len = sizeof(src);
    int flips = 1 + (int)(rand_r(&seed) % 4);
    for (int k = 0; k < flips; k++) {
      size_t pos = rand_r(&seed) % 5 ? (size_t)rand_r(&seed) % 140 : (size_t)rand_r(&seed) % len;
      b[pos] = (unsigned char)rand_r(&seed);
    }
    if (rand_r(&seed) % 5 == 0)
      len = (size_t)rand_r(&seed) % len;
    tu_write(p, b, len);
    tr_trace t;
    tr_error err;
    int rc = tr_open(&t, p, &err);
    if (rc == TR_OK) {
      ok++;
      tr_close(&t);
      continue;
    }
    failed++;
    cr_assert(rc < 0 && strcmp(tr_strerror(rc), "unknown trace error") != 0);
    cr_assert_str_eq(err.path, p);
    cr_assert(err.msg[0] != '\0');
    for (const char *c = err.msg; *c; c++)
      cr_assert((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f, "unprintable message");
  }
  cr_assert(ok > 0 && failed > 0, "ok %d failed %d", ok, failed);
}

/* ---- the memory budget (issue 20, finding 1) ------------------------------ */

static size_t largest_alloc; /* largest block requested through the hook */
static void *measuring_malloc(size_t n) {
  largest_alloc = n > largest_alloc ? n : largest_alloc;
  return malloc(n);
}
static void *measuring_realloc(void *p, size_t n) {
  largest_alloc = n > largest_alloc ? n : largest_alloc;
  return realloc(p, n);
}

/* One line whose indices describe 10^6 x 1000 counts (15 GiB as int64)
 * is refused by what it would need, before anything near that size is
 * allocated; the message gives the shape and both sizes. */
Test(trace, csv_larger_than_the_memory_budget_is_refused_before_it_is_allocated) {
  const char *p = P("tiny-huge.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n1000000,999,0,0,1\n");
  tr_set_allocator(measuring_malloc, measuring_realloc, NULL);
  tr_trace t;
  tr_error err;
  int rc = tr_open_within(&t, p, (uint64_t)1 << 30, &err);
  tr_set_allocator(NULL, NULL, NULL);
  cr_assert_eq(rc, TR_EBUDGET, "%s", err.msg);
  cr_assert_str_eq(err.path, p);
  cr_assert(strstr(err.msg, "1000001 x 1000 x 1 x 1") != NULL, "%s", err.msg);
  cr_assert(strstr(err.msg, "needs 14.9 GiB") != NULL, "%s", err.msg);
  cr_assert(strstr(err.msg, "memory budget of 1.00 GiB") != NULL, "%s", err.msg);
  cr_assert_lt(largest_alloc, (size_t)1 << 20, "allocated %zu bytes", largest_alloc);
  cr_assert_eq(t.owned, NULL);
  /* The default budget is half of this machine's memory: 10^15 counts are
   * beyond any machine. */
  tu_text(p, "iteration,layer,rank,expert,tokens\n999999,999,999,999,1\n");
  cr_assert_eq(tr_open(&t, p, &err), TR_EBUDGET, "%s", err.msg);
  cr_assert(strstr(err.msg, "needs 7.11 PiB") != NULL, "%s", err.msg);
}

/* The budget counts the dense counts, the per-slice totals and the parsed
 * lines (room for 1,024 at 48 bytes): exactly that much is enough. */
Test(trace, csv_exactly_within_the_budget_opens) {
  const char *p = P("budget.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n1,1,0,3,4\n");
  uint64_t need = 2 * 2 * 1 * 4 * 8 + 2 * 2 * 8 + 1024 * 48;
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open_within(&t, p, need, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(tr_at(&t, 1, 1, 0, 3), 4);
  tr_close(&t);
  cr_assert_eq(tr_open_within(&t, p, need - 1, &err), TR_EBUDGET);
  cr_assert_eq(t.data, NULL);
}

/* A CSV of many lines is refused while it is read, at the line where
 * holding the lines would pass the budget. */
Test(trace, csv_with_more_lines_than_the_budget_holds_is_refused_at_that_line) {
  const char *p = P("long-lines.csv");
  FILE *fp = fopen(p, "w");
  cr_assert_not_null(fp);
  fprintf(fp, "iteration,layer,rank,expert,tokens\n");
  for (int i = 0; i < 3000; i++)
    fprintf(fp, "%d,0,0,0,1\n", i);
  cr_assert_eq(fclose(fp), 0);
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open_within(&t, p, 60000, &err), TR_EBUDGET, "%s", err.msg);
  cr_assert_eq(err.line, 1026, "the 1,025th data line needs room for 2,048");
  cr_assert(strstr(err.msg, "2048 parsed CSV lines") != NULL, "%s", err.msg);
  cr_assert_eq(tr_open_within(&t, p, 1 << 20, &err), TR_OK, "%s", err.msg);
  cr_assert_eq(t.iterations, 3000);
  tr_close(&t);
}

Test(limits, sizes_parse_with_binary_suffixes_and_refuse_the_rest) {
  static const struct {
    const char *text;
    uint64_t bytes;
  } ok[] = {{"1", 1},           {"4096", 4096},         {"512M", 512ull << 20},
            {"4G", 4ull << 30}, {"4GiB", 4ull << 30},   {"4gb", 4ull << 30},
            {"1.5G", 3ull << 29}, {"2T", 2ull << 40},   {"64k", 64ull << 10},
            {"100B", 100}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    uint64_t b = 0;
    cr_assert_eq(tr_parse_size(ok[i].text, &b), TR_OK, "%s", ok[i].text);
    cr_assert_eq(b, ok[i].bytes, "%s: %llu", ok[i].text, (unsigned long long)b);
  }
  static const char *bad[] = {"", "0", "-1G", " 4G", "4 G", "4X", "G", "inf", "nan",
                              "0.1", "2000000T", "1e400", "4GG"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t b = 77;
    cr_assert_eq(tr_parse_size(bad[i], &b), TR_EINVAL, "'%s' accepted", bad[i]);
    cr_assert_eq(b, 77, "untouched on error");
  }
}

Test(limits, sizes_format_with_three_significant_digits) {
  char b[32];
  cr_assert_str_eq(tr_format_size(1023, b, sizeof(b)), "1023 bytes");
  cr_assert_str_eq(tr_format_size(1536, b, sizeof(b)), "1.50 KiB");
  cr_assert_str_eq(tr_format_size(16e9, b, sizeof(b)), "14.9 GiB");
  cr_assert_str_eq(tr_format_size(512e12, b, sizeof(b)), "466 TiB");
  cr_assert_str_eq(tr_format_size(18446744073709551615.0, b, sizeof(b)), "16.0 EiB");
}

Test(limits, the_default_budget_is_half_of_memory_at_most) {
  uint64_t d = tr_default_max_memory();
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  cr_assert_gt(d, 0);
  cr_assert_leq(d, (uint64_t)pages * (uint64_t)page / 2);
  cr_assert_eq(tr_max_memory(0), d);
  cr_assert_eq(tr_max_memory(12345), 12345);
  tr_error err;
  cr_assert_eq(tr_check_memory(100, 100, "x", "a thing", &err), TR_OK);
  cr_assert_eq(tr_check_memory(101, 100, "x", "a thing", &err), TR_EBUDGET);
  cr_assert_str_eq(err.msg, "a thing needs 101 bytes, more than the memory budget of 100 bytes");
  cr_assert_eq(tr_check_memory(UINT64_MAX, 100, "x", "a thing", &err), TR_EBUDGET);
  cr_assert(strstr(err.msg, "needs more than 16.0 EiB") != NULL, "%s", err.msg);
}

/* ---- physical ranges (issue 20, finding 6 and "What to build" 2) --------- */

/* A 1 x 1 x 1 x 4 trace with `sidecar` beside it; returns tr_open's code. */
static int open_with_sidecar(const char *sidecar, tr_trace *t, tr_error *err) {
  int32_t d[4] = {1, 2, 3, 4};
  tu_npy(P("ranged.npy"), 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1, 4), }",
         d, sizeof(d));
  tu_text(P("ranged.json"), sidecar);
  return tr_open(t, P("ranged.npy"), err);
}

/* Every model number a sidecar carries is refused outside its physical
 * range, with the key, the value and the range in the message. */
Test(trace, sidecar_numbers_out_of_their_physical_range_are_refused_naming_key_and_range) {
  static const struct {
    const char *json, *want[3];
  } bad[] = {
      {"{\"tokens_per_rank\": 9223372036854775807}",
       {"'tokens_per_rank' is 9223372036854775807", "between 1 and 1099511627776", "0: unknown"}},
      {"{\"tokens_per_rank\": 1099511627777}", {"'tokens_per_rank'", "1099511627776", NULL}},
      {"{\"tokens_per_rank\": -1}", {"'tokens_per_rank' is -1", NULL, NULL}},
      {"{\"top_k\": 5}", {"'top_k' is 5", "between 1 and 4 (the trace's experts)", NULL}},
      {"{\"top_k\": 2.0}", {"'top_k' must be an integer between 1 and 4", NULL, NULL}},
      {"{\"d_model\": 1048577}", {"'d_model' is 1048577", "between 1 and 1048576", NULL}},
      {"{\"d_ff\": 4194305}", {"'d_ff' is 4194305", "between 1 and 4194304", NULL}},
      {"{\"expert_hidden\": -3}", {"'expert_hidden' is -3", "4194304", NULL}},
      {"{\"d_ff\": 768, \"expert_hidden\": 512}", {"'d_ff' (768)", "'expert_hidden' (512)",
                                                   "disagree"}},
      {"{\"bytes_per_elem\": 16}", {"'bytes_per_elem' is 16", "between 1 and 8", NULL}},
      {"{\"bytes_per_element\": \"2\"}", {"'bytes_per_element' must be an integer", NULL, NULL}},
      {"{\"iterations\": 2}", {"iterations = 2 but the trace has 1", NULL, NULL}},
      {"{\"layers\": 0}", {"'layers' is 0", "between 1 and 4096", NULL}},
      {"{\"ranks\": 1048577}", {"'ranks' is 1048577", "between 1 and 1048576", NULL}},
      {"{\"experts\": 4.5}", {"'experts' must be an integer", NULL, NULL}},
      {"{\"batch\": 0, \"seq\": 256}", {"'batch' is 0", "between 1 and 2147483647", NULL}},
      {"{\"batch\": 2147483647, \"seq\": 2147483647}",
       {"batch x seq / ranks", "4611686014132420609 tokens per rank", "1099511627776"}},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tr_trace t;
    tr_error err;
    cr_assert_eq(open_with_sidecar(bad[i].json, &t, &err), TR_EMETA, "%s accepted", bad[i].json);
    cr_assert_str_eq(err.path, P("ranged.json"));
    for (int k = 0; k < 3 && bad[i].want[k]; k++)
      cr_assert(strstr(err.msg, bad[i].want[k]) != NULL, "%s: '%s' lacks '%s'", bad[i].json,
                err.msg, bad[i].want[k]);
    cr_assert_eq(t.data, NULL);
  }
}

/* The ends of every range, and 0 (unknown), are accepted. */
Test(trace, sidecar_numbers_at_the_ends_of_their_ranges_are_accepted) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(open_with_sidecar("{\"top_k\": 4, \"d_model\": 1048576, \"d_ff\": 4194304, "
                                 "\"expert_hidden\": 4194304, \"bytes_per_elem\": 8, "
                                 "\"tokens_per_rank\": 1099511627776, \"iterations\": 1, "
                                 "\"layers\": 1, \"ranks\": 1, \"experts\": 4}",
                                 &t, &err),
               TR_OK, "%s", err.msg);
  cr_assert_eq(t.meta.top_k, 4);
  cr_assert_eq(t.meta.d_model, 1048576);
  cr_assert_eq(t.meta.d_ff, 4194304);
  cr_assert_eq(t.meta.bytes_per_elem, 8);
  cr_assert_eq(t.meta.tokens_per_rank, (int64_t)1 << 40);
  tr_close(&t);
  cr_assert_eq(open_with_sidecar("{\"top_k\": 1, \"d_model\": 1, \"d_ff\": 1, "
                                 "\"bytes_per_elem\": 1, \"tokens_per_rank\": 1}",
                                 &t, &err),
               TR_OK, "%s", err.msg);
  tr_close(&t);
  cr_assert_eq(open_with_sidecar("{\"top_k\": 0, \"d_model\": 0, \"d_ff\": 0, "
                                 "\"bytes_per_elem\": 0, \"tokens_per_rank\": 0, \"batch\": 8, "
                                 "\"seq\": 4}",
                                 &t, &err),
               TR_OK, "%s", err.msg);
  cr_assert_eq(t.meta.top_k, 0, "0 is unknown");
  cr_assert_eq(t.meta.tokens_per_rank, 32, "batch x seq / ranks when tokens_per_rank is 0");
  tr_close(&t);
}

/* The shape of a .npy trace is within the physical ranges, named in the
 * message. */
Test(trace, npy_shapes_beyond_the_physical_ranges_are_eshape_naming_the_range) {
  static int32_t d[4097];
  const char *p = P("deep.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 4097, 1, 1), }", d,
         sizeof(d));
  expect_err(p, TR_ESHAPE, 0);
  tr_trace t;
  tr_error err;
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "4097 layers: layers must be between 1 and 4096") != NULL, "%s",
            err.msg);
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 4096, 1, 1), }", d,
         4096 * 4);
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  tr_close(&t);
}

/* A header that claims more data than the file holds is refused from the
 * header alone: the claimed shape, both sizes, nothing large allocated
 * (a product that overflows 64 bits says "more than"). */
Test(trace, npy_header_claiming_more_than_the_file_holds_is_etrunc_with_both_sizes) {
  int32_t d[6] = {0};
  const char *p = P("claims.npy");
  tu_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (16000000, 64, 64, 64), }", d,
         sizeof(d));
  tr_set_allocator(measuring_malloc, measuring_realloc, NULL);
  largest_alloc = 0;
  expect_err(p, TR_ETRUNC, 0);
  tr_set_allocator(NULL, NULL, NULL);
  cr_assert_lt(largest_alloc, (size_t)4096);
  tr_trace t;
  tr_error err;
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "claims shape (16000000, 64, 64, 64), 15.3 TiB (16777216000000 "
                            "bytes) of data, but the file holds 24") != NULL,
            "%s", err.msg);
  tu_npy(p, 1,
         "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2, 1), }",
         d, sizeof(d));
  expect_err(p, TR_ETRUNC, 0);
  tr_open(&t, p, &err);
  cr_assert(strstr(err.msg, "more than 16.0 EiB") != NULL, "%s", err.msg);
}

/* Issue 20, finding 1: the 20-byte line with iteration 10^9 is refused on
 * its line by the iterations range, before any dense size is computed; so
 * is every index beyond its dimension's range. */
Test(trace, csv_indices_beyond_the_physical_ranges_are_eformat_naming_the_range) {
  static const struct {
    const char *line, *want;
  } bad[] = {{"1000000000,0,0,0,1\n", "iteration 1000000000 is out of range: indices go from 0 "
                                      "to 16777215 (iterations must be between 1 and 16777216)"},
             {"16777216,0,0,0,1\n", "iteration 16777216 is out of range"},
             {"0,4096,0,0,1\n", "layer 4096 is out of range: indices go from 0 to 4095"},
             {"0,0,1048576,0,1\n", "rank 1048576 is out of range: indices go from 0 to 1048575"},
             {"0,0,0,1048576,1\n", "expert 1048576 is out of range"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[128];
    snprintf(text, sizeof(text), "iteration,layer,rank,expert,tokens\n%s", bad[i].line);
    const char *p = P("ranges.csv");
    tu_text(p, text);
    expect_err(p, TR_EFORMAT, 2);
    tr_trace t;
    tr_error err;
    tr_open(&t, p, &err);
    cr_assert(strstr(err.msg, bad[i].want) != NULL, "'%s' lacks '%s'", err.msg, bad[i].want);
  }
}

/* The writer never writes what tr_open would refuse. */
Test(writer, shapes_and_model_numbers_beyond_their_ranges_are_not_written) {
  int64_t c[4] = {1, 2, 3, 4};
  tr_error err;
  tr_writer w;
  cr_assert_eq(tr_writer_open(&w, P("w.npy"), 1, 4097, 1, 1, TR_INT32, NULL, &err), TR_EINVAL);
  cr_assert(strstr(err.msg, "4097 layers: layers must be between 1 and 4096") != NULL, "%s",
            err.msg);
  tr_meta m = {.top_k = 5};
  cr_assert_eq(tr_write_npy(P("w.npy"), c, 1, 1, 1, 4, &m, &err), TR_EINVAL);
  cr_assert(strstr(err.msg, "top_k 5 is out of range: it must be between 1 and 4 (the experts)") !=
                NULL,
            "%s", err.msg);
  m = (tr_meta){.tokens_per_rank = INT64_MAX};
  cr_assert_eq(tr_write_npy(P("w.npy"), c, 1, 1, 1, 4, &m, &err), TR_EINVAL);
  cr_assert(strstr(err.msg, "tokens_per_rank 9223372036854775807") != NULL, "%s", err.msg);
  cr_assert_neq(access(P("w.npy"), F_OK), 0);
  cr_assert_neq(access(P("w.json"), F_OK), 0);
  m = (tr_meta){.top_k = 4, .d_model = 1 << 20, .tokens_per_rank = (int64_t)1 << 40};
  cr_assert_eq(tr_write_npy(P("w.npy"), c, 1, 1, 1, 4, &m, &err), TR_OK, "%s", err.msg);
}
