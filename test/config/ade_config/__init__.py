"""Sample ADE configuration package used by the ade-worker tests.

The test engine (``test/engine``) reads ``FIELDS``: the canonical fields a
document is expected to contain, with the header synonyms that map a column
to each field. Matching is done on normalized headers (lowercase, trimmed,
spaces and dashes turned into underscores).

The sample declares the engine's built-in default fields, so that a run maps
the same columns whether this package or the engine's fallback supplied them;
they are written once, in ``ade_engine/config.py``. Like a real configuration
package, this one is only imported by the engine it was installed with.
"""

from ade_engine.config import DEFAULT_FIELDS as FIELDS

__version__ = "0.0.1"
