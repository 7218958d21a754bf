"""Sample ADE configuration package used by the ade-worker tests.

The test engine (``test/engine``) reads ``FIELDS``: the canonical fields a
document is expected to contain, with the header synonyms that map a column
to each field. Matching is done on normalized headers (lowercase, trimmed,
spaces and dashes turned into underscores).
"""

__version__ = "0.0.1"

FIELDS = {
    "email": {
        "label": "Email",
        "synonyms": ["email", "e-mail", "mail", "email_address"],
    },
    "first_name": {
        "label": "First Name",
        "synonyms": ["first_name", "first", "given_name", "forename"],
    },
    "last_name": {
        "label": "Last Name",
        "synonyms": ["last_name", "last", "surname", "family_name"],
    },
    "phone": {
        "label": "Phone",
        "synonyms": ["phone", "telephone", "phone_number", "tel"],
    },
}
