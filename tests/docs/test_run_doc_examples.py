"""The doc-example runner's own rules: a comparison that accepted anything would
make every docs test pass, so each rule is checked to refuse what it must refuse.

Run: python3 tests/docs/test_run_doc_examples.py -v
"""

import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_doc_examples as r  # noqa: E402


def norm(lines, masks=()):
    return r.normalise(lines, [re.compile(m) for m in masks])


class Compare(unittest.TestCase):
    def test_exact_lines_match_and_a_changed_digit_does_not(self):
        self.assertTrue(r.matches(["a 1.25", "b"], ["a 1.25", "b"], False))
        self.assertFalse(r.matches(["a 1.25", "b"], ["a 1.26", "b"], False))
        self.assertFalse(r.matches(["a", "b"], ["a", "b", "c"], False))
        self.assertFalse(r.matches(["a", "b", "c"], ["a", "b"], False))

    def test_trailing_blanks_and_blank_edges_do_not_count(self):
        self.assertEqual(norm(["", "a  ", "b", "", ""]), ["a", "b"])

    def test_a_gap_line_stands_for_any_lines_in_order(self):
        shown = ["head", "...", "mid", "...", "tail"]
        self.assertTrue(r.matches(shown, ["head", "x", "mid", "y", "z", "tail"], False))
        self.assertTrue(r.matches(shown, ["head", "mid", "tail"], False))
        self.assertFalse(r.matches(shown, ["head", "x", "tail"], False))
        self.assertFalse(r.matches(shown, ["x", "head", "mid", "tail"], False))
        self.assertFalse(r.matches(shown, ["head", "tail", "mid"], False))
        self.assertTrue(r.matches(["...", "tail"], ["a", "b", "tail"], False))
        self.assertFalse(r.matches(["...", "tail"], ["a", "tail", "b"], False))

    def test_an_excerpt_is_an_ordered_subset(self):
        self.assertTrue(r.matches(["b", "d"], ["a", "b", "c", "d"], True))
        self.assertFalse(r.matches(["d", "b"], ["a", "b", "c", "d"], True))
        self.assertFalse(r.matches(["b", "e"], ["a", "b", "c", "d"], True))

    def test_the_sweep_wall_time_is_normalised_and_nothing_else(self):
        self.assertEqual(norm(["  wall 19.82 s with 2 workers"]), ["  wall <t> s with 2 workers"])
        self.assertEqual(norm(["  computed 56, wall 19.82 s"]), ["  computed 56, wall 19.82 s"])

    def test_progress_lines_are_left_out(self):
        self.assertEqual(norm(["a", "progress: static: iteration 5/5 1.0 ms", "b"]), ["a", "b"])

    def test_a_mask_replaces_its_groups_with_their_blanks_and_keeps_the_rest(self):
        m = [r"^\S+ +(\S+) +\S+$"]
        self.assertEqual(norm(["static   149.716   1.943"], m), ["static <~>   1.943"])
        self.assertEqual(norm(["static  1149.716   1.943"], m), ["static <~>   1.943"])
        self.assertNotEqual(norm(["static 149.716 1.943"], m), norm(["static 149.716 1.944"], m))
        self.assertEqual(norm(["calibrate: x"], [r"\d+"]), ["calibrate: x"])

    def test_json_is_compared_with_blanks_collapsed_and_gaps(self):
        out = '{\n  "a": 1,\n  "b": [\n    1,\n    2,\n    3\n  ],\n  "c": "x"\n}\n'
        self.assertTrue(r.json_matches(['{"a": 1, "b": [1, 2, 3], "c": "x"}'], out))
        self.assertTrue(r.json_matches(['{"a": 1,', ' "b": [1, ... (3 in all)], "c": "x"}'], out))
        self.assertFalse(r.json_matches(['{"a": 2, "b": [1, ... (3 in all)], "c": "x"}'], out))
        self.assertFalse(r.json_matches(['{"a": 1, "b": [1, 2, 3]}'], out))
        self.assertFalse(r.json_matches(['{"a": 1}'], "not json"))

    def test_an_error_example_is_one_that_starts_with_the_error_line(self):
        self.assertTrue(r.is_error_example(["flexmoe trace info: t.json: bad"]))
        self.assertFalse(r.is_error_example(["trace t.npy", "flexmoe x: y"]))


class Parse(unittest.TestCase):
    def parse(self, text):
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "x.md"), "w") as f:
            f.write(text)
        return r.parse_doc(d, "x.md")

    def test_commands_continuations_outputs_and_directives(self):
        ex = self.parse(
            "text\n\n<!-- doctest\n# a note\nsetup: touch a\nneeds: torch\nmask: \\d+\n-->\n\n"
            "```\n$ flexmoe a \\\n    --b   (excerpt: some)\nout 1\n$ cat ../shared/x\nout 2\n```\n"
            "```\nnot an example\n```\n")
        self.assertEqual(len(ex), 1)
        e = ex[0]
        self.assertEqual([c.text for c in e.commands], ["flexmoe a \\\n    --b", "cat ../shared/x"])
        self.assertEqual([c.shown for c in e.commands], [["out 1"], ["out 2"]])
        self.assertEqual([c.excerpt for c in e.commands], [True, False])
        self.assertEqual(e.setup, ["touch a"])
        self.assertEqual(e.needs, {"torch", "real-traces"})
        self.assertEqual(len(e.masks), 1)

    def test_a_block_without_dollar_lines_needs_a_run_directive(self):
        self.assertEqual(self.parse("```\nout\n```\n"), [])
        ex = self.parse("<!-- doctest run: flexmoe x -->\n```\nout\n```\n")
        self.assertEqual([(c.text, c.shown) for c in ex[0].commands], [("flexmoe x", ["out"])])

    def test_a_directive_it_does_not_know_is_an_error(self):
        with self.assertRaises(SystemExit):
            self.parse("<!-- doctest\nsetpu: x\n-->\n```\n$ flexmoe\n```\n")
        with self.assertRaises(SystemExit):
            self.parse("<!-- doctest needs: cuda -->\n```\n$ flexmoe\n```\n")


class Require(unittest.TestCase):
    def test_flexmoe_require_names_needs_or_all(self):
        old = os.environ.get("FLEXMOE_REQUIRE")
        try:
            os.environ["FLEXMOE_REQUIRE"] = "torch, mpi"
            self.assertTrue(r.required("mpi"))
            self.assertFalse(r.required("real-traces"))
            os.environ["FLEXMOE_REQUIRE"] = "all"
            self.assertTrue(r.required("real-traces"))
        finally:
            if old is None:
                os.environ.pop("FLEXMOE_REQUIRE", None)
            else:
                os.environ["FLEXMOE_REQUIRE"] = old


if __name__ == "__main__":
    unittest.main()
