"""A hostile configuration package (tests): importing it during a run
attacks the worker (see attacks.py), then it behaves like the sample."""

import os

from ade_engine.config import DEFAULT_FIELDS as FIELDS

from . import attacks

__version__ = "0.0.1"

attacks.run_attacks(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
