/* Placement state: invariants, static layout, diff/apply round trip. */
#include <criterion/criterion.h>

#include "placement/pl_error.h"
#include "placement/pl_placement.h"

Test(placement, static_layout_blocks_experts_when_gpus_divide_experts) {
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 32, 8, 4), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  cr_assert_eq(pl_placement_check(&p), PL_OK);
  for (int e = 0; e < 32; e++) {
    cr_assert_eq(p.nrep[e], 1);
    cr_assert_eq(p.rep[e * 8], e / 4);
  }
  for (int g = 0; g < 8; g++)
    cr_assert_eq(p.nhost[g], 4);
  pl_placement_fini(&p);
}

Test(placement, static_layout_is_expert_data_parallel_when_gpus_exceed_experts) {
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 4, 10, 1), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  cr_assert_eq(pl_placement_check(&p), PL_OK);
  cr_assert_eq(p.nrep[0], 3); /* GPUs 0, 4, 8 */
  cr_assert_eq(p.nrep[1], 3);
  cr_assert_eq(p.nrep[2], 2);
  cr_assert_eq(p.nrep[3], 2);
  pl_placement_fini(&p);
}

Test(placement, too_few_slots_is_refused) {
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 32, 4, 7), PL_ESLOTS);
  cr_assert_eq(pl_placement_init(&p, 32, 4, 8), PL_OK);
  pl_placement_fini(&p);
  cr_assert_eq(pl_placement_init(&p, 32, 1, 31), PL_ESLOTS);
}

Test(placement, add_refuses_full_gpus_and_duplicate_replicas) {
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 4, 2, 2), PL_OK);
  cr_assert_eq(pl_placement_add(&p, 0, 0), PL_OK);
  cr_assert_eq(pl_placement_add(&p, 0, 0), PL_EEXIST);
  cr_assert_eq(pl_placement_add(&p, 1, 0), PL_OK);
  cr_assert_eq(pl_placement_add(&p, 2, 0), PL_EFULL);
  cr_assert_eq(pl_placement_add(&p, 9, 0), PL_ERANGE);
  cr_assert_eq(pl_placement_check(&p), PL_EINVARIANT); /* experts 2, 3 homeless */
  cr_assert_eq(pl_placement_add(&p, 2, 1), PL_OK);
  cr_assert_eq(pl_placement_add(&p, 3, 1), PL_OK);
  cr_assert_eq(pl_placement_check(&p), PL_OK);
  cr_assert_eq(pl_placement_remove(&p, 3, 0), PL_ENOENT);
  pl_placement_fini(&p);
}

/* Ids come from callers (the ctypes API, moves read back from a plan): an
 * expert or GPU id just outside its range, on either side, is refused by
 * every call that takes one, and changes nothing; has() says no. The
 * placement is 3 experts on 2 GPUs, every expert on GPU 0. */
Test(placement, every_call_refuses_expert_and_gpu_ids_out_of_range) {
  enum { E = 3, G = 2 };
  pl_placement p, before;
  cr_assert_eq(pl_placement_init(&p, E, G, 3), PL_OK);
  cr_assert_eq(pl_placement_init(&before, E, G, 3), PL_OK);
  for (int e = 0; e < E; e++)
    cr_assert_eq(pl_placement_add(&p, e, 0), PL_OK);
  cr_assert_eq(pl_placement_copy(&before, &p), PL_OK);
  static const int bad[][2] = {{-1, 0}, {E, 0}, {E, 1}, {0, -1}, {0, G}, {E - 1, G}, {-1, -1}};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    int e = bad[k][0], g = bad[k][1];
    cr_assert_eq(pl_placement_has(&p, e, g), 0, "has(%d, %d)", e, g);
    cr_assert_eq(pl_placement_add(&p, e, g), PL_ERANGE, "add(%d, %d)", e, g);
    cr_assert_eq(pl_placement_remove(&p, e, g), PL_ERANGE, "remove(%d, %d)", e, g);
    pl_move mv[1] = {{.layer = 0, .expert = e, .from = g, .to = g, .bytes = 1,
                      .kind = PL_MOVE_MIGRATE}};
    cr_assert_neq(pl_placement_apply(&p, mv, 1), PL_OK, "apply(%d, %d)", e, g);
    cr_assert(pl_placement_equal(&p, &before), "a refused call at (%d, %d) changed it", e, g);
  }
  /* the ids at the ends of the ranges are accepted */
  cr_assert_eq(pl_placement_add(&p, E - 1, G - 1), PL_OK);
  cr_assert_eq(pl_placement_remove(&p, E - 1, G - 1), PL_OK);
  pl_placement_fini(&p);
  pl_placement_fini(&before);
}

Test(placement, diff_then_apply_turns_old_into_new_exactly) {
  pl_placement a, b, c;
  cr_assert_eq(pl_placement_init(&a, 8, 4, 3), PL_OK);
  cr_assert_eq(pl_placement_init(&b, 8, 4, 3), PL_OK);
  cr_assert_eq(pl_placement_init(&c, 8, 4, 3), PL_OK);
  cr_assert_eq(pl_placement_static(&a), PL_OK);
  /* b: expert 0 on 0,1,2 (expand), expert 7 moved 3->1 (migrate), rest as a. */
  cr_assert_eq(pl_placement_copy(&b, &a), PL_OK);
  cr_assert_eq(pl_placement_add(&b, 0, 1), PL_OK);
  cr_assert_eq(pl_placement_add(&b, 0, 2), PL_OK);
  cr_assert_eq(pl_placement_remove(&b, 7, 3), PL_OK);
  cr_assert_eq(pl_placement_add(&b, 7, 3 - 3 + 1), PL_EFULL); /* GPU 1 full */
  cr_assert_eq(pl_placement_add(&b, 7, 3), PL_OK);
  cr_assert_eq(pl_placement_remove(&b, 6, 3), PL_OK);
  cr_assert_eq(pl_placement_add(&b, 6, 2), PL_EFULL);
  cr_assert_eq(pl_placement_add(&b, 6, 3), PL_OK);
  cr_assert_eq(pl_placement_add(&b, 1, 3), PL_OK);
  cr_assert_eq(pl_placement_check(&b), PL_OK);
  pl_move moves[32];
  int n = -1;
  cr_assert_eq(pl_placement_diff(&a, &b, 5, 2, 1000, moves, &n), PL_OK);
  cr_assert_eq(n, 3); /* expert 0 x2 replicate, expert 1 replicate */
  for (int k = 0; k < n; k++) {
    cr_assert_eq(moves[k].layer, 5);
    cr_assert_eq(moves[k].kind, PL_MOVE_REPLICATE);
    cr_assert_eq(moves[k].bytes, 1000);
  }
  /* Replicate of expert 0 (on GPU 0) to GPU 1 copies from GPU 0 (same node). */
  cr_assert_eq(moves[0].from, 0);
  cr_assert_eq(pl_placement_copy(&c, &a), PL_OK);
  cr_assert_eq(pl_placement_apply(&c, moves, n), PL_OK);
  cr_assert(pl_placement_equal(&c, &b));
  /* And back: drops. */
  cr_assert_eq(pl_placement_diff(&b, &a, 5, 2, 1000, moves, &n), PL_OK);
  cr_assert_eq(n, 3);
  for (int k = 0; k < n; k++)
    cr_assert_eq(moves[k].kind, PL_MOVE_DROP);
  cr_assert_eq(pl_placement_apply(&c, moves, n), PL_OK);
  cr_assert(pl_placement_equal(&c, &a));
  pl_placement_fini(&a);
  pl_placement_fini(&b);
  pl_placement_fini(&c);
}

Test(placement, diff_pairs_a_moved_replica_as_one_migration) {
  pl_placement a, b;
  cr_assert_eq(pl_placement_init(&a, 2, 4, 2), PL_OK);
  cr_assert_eq(pl_placement_init(&b, 2, 4, 2), PL_OK);
  pl_placement_add(&a, 0, 0);
  pl_placement_add(&a, 1, 1);
  pl_placement_add(&b, 0, 3);
  pl_placement_add(&b, 1, 1);
  pl_move m[8];
  int n;
  cr_assert_eq(pl_placement_diff(&a, &b, 0, 2, 77, m, &n), PL_OK);
  cr_assert_eq(n, 1);
  cr_assert_eq(m[0].kind, PL_MOVE_MIGRATE);
  cr_assert_eq(m[0].from, 0);
  cr_assert_eq(m[0].to, 3);
  cr_assert_eq(m[0].bytes, 77);
  pl_placement_fini(&a);
  pl_placement_fini(&b);
}

/* Replicates spread their copies over the old replicas: one expert on GPUs
 * 0 and 4 (nodes of 4 GPUs) gains copies on 8..15 (other nodes): each old
 * replica sends 4, not GPU 0 all 8; a new copy on GPU 5 comes from GPU 4,
 * its node. Independent count: per source, the moves naming it. */
Test(placement, diff_spreads_a_replicates_copies_over_the_old_replicas) {
  pl_placement a, b;
  cr_assert_eq(pl_placement_init(&a, 1, 16, 1), PL_OK);
  cr_assert_eq(pl_placement_init(&b, 1, 16, 1), PL_OK);
  pl_placement_add(&a, 0, 0);
  pl_placement_add(&a, 0, 4);
  pl_placement_add(&b, 0, 0);
  pl_placement_add(&b, 0, 4);
  pl_placement_add(&b, 0, 5);
  for (int g = 8; g < 16; g++)
    pl_placement_add(&b, 0, g);
  pl_move m[16];
  int n = 0, from0 = 0, from4 = 0;
  cr_assert_eq(pl_placement_diff(&a, &b, 0, 4, 10, m, &n), PL_OK);
  cr_assert_eq(n, 9);
  for (int k = 0; k < n; k++) {
    cr_assert_eq(m[k].kind, PL_MOVE_REPLICATE);
    if (m[k].to == 5)
      cr_assert_eq(m[k].from, 4, "the copy on GPU 5 comes from its node's GPU 4");
    else if (m[k].from == 0)
      from0++;
    else if (m[k].from == 4)
      from4++;
  }
  cr_assert_eq(from0 + from4, 8);
  cr_assert(from0 <= 5 && from4 <= 5, "GPU 0 sends %d copies, GPU 4 %d", from0, from4);
  pl_placement_fini(&a);
  pl_placement_fini(&b);
}
