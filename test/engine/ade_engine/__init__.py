"""Test double of the ADE engine.

A small, stdlib-only stand-in for the real ``ade_engine`` that honours its
command line (``process file``, ``config validate``) and its NDJSON event
stream, so the ade-worker Go tests can run real subprocesses offline.
Behaviour is steered from the input file with ``#ade-test:`` directives
(see README.md).
"""

__version__ = "0.0.1"
