"""Loading and validating the configuration package (``ade_config``)."""

import importlib
import os
import sys

CONFIG_MODULE = "ade_config"
INVALID_MARKER = "INVALID"

# Used when the package cannot be imported; the sample configuration
# (test/config) declares these same fields by importing them.
DEFAULT_FIELDS = {
    "email": {"label": "Email", "synonyms": ["email", "e-mail", "mail", "email_address"]},
    "first_name": {"label": "First Name", "synonyms": ["first_name", "first", "given_name", "forename"]},
    "last_name": {"label": "Last Name", "synonyms": ["last_name", "last", "surname", "family_name"]},
    "phone": {"label": "Phone", "synonyms": ["phone", "telephone", "phone_number", "tel"]},
}


class ConfigError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_issue(self):
        return {"severity": "error", "code": self.code, "message": self.message}


def _looks_like_path(spec):
    return os.sep in spec or spec.startswith(".") or os.path.exists(spec)


def import_config(spec):
    """Import the configuration module named or located by ``spec``.

    A directory is put first on ``sys.path`` and ``ade_config`` imported from
    it (a directory that *is* the ``ade_config`` package is handled too);
    anything else is taken as a module name.
    """
    # Never write __pycache__ into a workspace's config package folder.
    sys.dont_write_bytecode = True
    if os.path.isdir(spec):
        folder = os.path.abspath(spec)
        if os.path.basename(folder) == CONFIG_MODULE and os.path.isfile(os.path.join(folder, "__init__.py")):
            folder = os.path.dirname(folder)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = CONFIG_MODULE
    elif _looks_like_path(spec):
        raise ConfigError("config_package_not_found", "config package folder %s does not exist" % spec)
    else:
        name = spec
    try:
        return importlib.import_module(name)
    except Exception as exc:  # any failure inside the package counts
        raise ConfigError("import_failed", "cannot import %s: %s: %s" % (name, type(exc).__name__, exc))


def check_fields(fields):
    """Return a clean copy of ``FIELDS`` or raise ConfigError."""
    if not isinstance(fields, dict) or not fields:
        raise ConfigError("invalid_fields", "FIELDS must be a non-empty dict")
    clean = {}
    for name, spec in fields.items():
        if not isinstance(name, str) or not name or not isinstance(spec, dict):
            raise ConfigError("invalid_fields", "FIELDS[%r] must map a name to a dict" % (name,))
        label = spec.get("label", name)
        synonyms = spec.get("synonyms", [])
        if not isinstance(label, str):
            raise ConfigError("invalid_fields", "FIELDS[%r].label must be a string" % name)
        if not isinstance(synonyms, (list, tuple)) or not all(isinstance(s, str) for s in synonyms):
            raise ConfigError("invalid_fields", "FIELDS[%r].synonyms must be a list of strings" % name)
        clean[name] = {"label": label, "synonyms": list(synonyms)}
    return clean


def load_fields(spec, log):
    """Return (fields, info) from the config package, falling back to defaults."""
    try:
        module = import_config(spec)
        fields = check_fields(getattr(module, "FIELDS", None))
    except ConfigError as exc:
        log.emit(
            "engine.config.fallback",
            "Config package unusable, using built-in default fields",
            {"config_package": spec, "code": exc.code, "reason": exc.message},
            level="warning",
        )
        return check_fields(DEFAULT_FIELDS), {"source": "default", "config_version": None, "module_file": None}
    info = {
        "source": "package",
        "config_version": getattr(module, "__version__", None),
        "module_file": getattr(module, "__file__", None),
    }
    return fields, info


def validate_package(spec):
    """Return the list of issues found in the config package (empty when valid)."""
    issues = []
    if _looks_like_path(spec):
        if not os.path.isdir(spec):
            return [ConfigError("config_package_not_found", "config package folder %s does not exist" % spec).as_issue()]
        marker = os.path.join(spec, INVALID_MARKER)
        if os.path.exists(marker):
            try:
                with open(marker, encoding="utf-8", errors="replace") as handle:
                    reason = handle.read().strip()
            except OSError:
                reason = ""
            issues.append({
                "severity": "error",
                "code": "marked_invalid",
                "message": reason or "config package is marked INVALID",
            })
    try:
        module = import_config(spec)
        check_fields(getattr(module, "FIELDS", None))
    except ConfigError as exc:
        issues.append(exc.as_issue())
    return issues
