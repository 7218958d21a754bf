"""The fast command-line path must read exactly what argparse reads, and
hand everything unusual to argparse. Run: python3 -m unittest discover -s test/engine"""

import unittest

from ade_engine.cli import build_parser, fast_parse

WELL_FORMED = [
    "process file --input a --output-dir b --config-package c",
    "process file --input=a --output-dir b --config-package c --log-format text --log-level WARN",
    "process file --input a --output-dir b --config-package c -s S1 --input-sheet S2 --active-sheet-only --logs-dir x",
    "config validate --config-package c --log-level debug",
]
UNUSUAL = [
    "process file --input a --output-dir b",  # missing option
    "process file --inp a --output-dir b --config-package c",  # abbreviation
    "process file --input -x --output-dir b --config-package c",  # value like an option
    "process file --input a --output-dir b --config-package c --log-format xml",
    "process file --input a --output-dir b --config-package c --log-level loud",
    "process file --active-sheet-only=yes --input a --output-dir b --config-package c",
    "--version",
    "process file --help",
]


class FastParse(unittest.TestCase):
    def test_well_formed_matches_argparse(self):
        for line in WELL_FORMED:
            with self.subTest(line=line):
                fast = fast_parse(line.split())
                self.assertIsNotNone(fast)
                self.assertEqual(vars(fast), vars(build_parser().parse_args(line.split())))

    def test_unusual_goes_to_argparse(self):
        for line in UNUSUAL:
            with self.subTest(line=line):
                self.assertIsNone(fast_parse(line.split()))


if __name__ == "__main__":
    unittest.main()
