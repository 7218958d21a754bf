"""Command line: ``python -m ade_engine {process file|config validate}``."""

import sys
import types

from ade_engine import __version__
from ade_engine.config import validate_package
from ade_engine.events import EventLogger, parse_level


def _level(value):
    import argparse

    try:
        return parse_level(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _add_logging(parser):
    parser.add_argument("--log-format", choices=["ndjson", "text"], default="ndjson",
                        help="event format on stderr (default: ndjson)")
    parser.add_argument("--log-level", type=_level, default="info",
                        help="debug, info, warning or error (default: info)")


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="ade_engine", description="ADE engine (test double)")
    parser.add_argument("--version", action="version", version="ade-engine %s" % __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    process = commands.add_parser("process", help="process documents")
    process_commands = process.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    process_commands.required = True
    process_file = process_commands.add_parser("file", help="process one input file")
    process_file.add_argument("--input", required=True, help="input document (CSV)")
    process_file.add_argument("--output-dir", required=True, help="folder for outputs")
    process_file.add_argument("--config-package", required=True,
                              help="config package folder or importable module name")
    process_file.add_argument("-s", "--input-sheet", action="append", default=[],
                              help="sheet to process (repeatable)")
    process_file.add_argument("--active-sheet-only", action="store_true",
                              help="process only the active sheet")
    process_file.add_argument("--logs-dir", help="accepted and ignored")
    _add_logging(process_file)

    config = commands.add_parser("config", help="configuration packages")
    config_commands = config.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    config_commands.required = True
    validate = config_commands.add_parser("validate", help="validate a config package")
    validate.add_argument("--config-package", required=True,
                          help="config package folder or importable module name")
    _add_logging(validate)
    return parser


# Options of the fast path: name -> (dest, kind). kind is "value", "list"
# (repeatable) or "flag".
_LOGGING = {"--log-format": ("log_format", "value"), "--log-level": ("log_level", "value")}
_FAST = {
    ("process", "file"): dict(_LOGGING, **{
        "--input": ("input", "value"), "--output-dir": ("output_dir", "value"),
        "--config-package": ("config_package", "value"), "-s": ("input_sheet", "list"),
        "--input-sheet": ("input_sheet", "list"), "--active-sheet-only": ("active_sheet_only", "flag"),
        "--logs-dir": ("logs_dir", "value"),
    }),
    ("config", "validate"): dict(_LOGGING, **{"--config-package": ("config_package", "value")}),
}
_REQUIRED = {("process", "file"): ("input", "output_dir", "config_package"), ("config", "validate"): ("config_package",)}


def fast_parse(argv):
    """Parse a well-formed command line without argparse, whose import costs
    several milliseconds on every run. Returns None for anything unusual
    (help, errors, abbreviations), which argparse then handles and reports."""
    if len(argv) < 2 or (argv[0], argv[1]) not in _FAST:
        return None
    key = (argv[0], argv[1])
    options = _FAST[key]
    values = {"command": key[0], "subcommand": key[1], "log_format": "ndjson", "log_level": "info"}
    if key[0] == "process":
        values.update(input_sheet=[], active_sheet_only=False, logs_dir=None)
    i = 2
    while i < len(argv):
        name, eq, value = argv[i].partition("=") if argv[i].startswith("--") else (argv[i], "", "")
        if name not in options:
            return None
        dest, kind = options[name]
        i += 1
        if kind == "flag":
            if eq:
                return None
            values[dest] = True
            continue
        if not eq:
            if i >= len(argv) or argv[i].startswith("-"):
                return None
            value = argv[i]
            i += 1
        if kind == "list":
            values[dest].append(value)
        else:
            values[dest] = value
    if any(dest not in values for dest in _REQUIRED[key]) or values["log_format"] not in ("ndjson", "text"):
        return None
    try:
        values["log_level"] = parse_level(values["log_level"])
    except ValueError:
        return None
    return types.SimpleNamespace(**values)


def config_validate(args, log):
    log.emit("engine.config.validate.start", "Validating config package",
             {"config_package": args.config_package}, always=True)
    issues = validate_package(args.config_package)
    valid = not any(issue["severity"] == "error" for issue in issues)
    log.emit(
        "engine.config.validate.completed",
        "Config package is valid" if valid else "Config package is invalid",
        {"config_package": args.config_package, "valid": valid, "issues": issues},
        level="info" if valid else "error",
        always=True,
    )
    return 0 if valid else 1


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    args = fast_parse(argv) or build_parser().parse_args(argv)
    sys.stderr.flush()  # events go through sys.stderr.buffer from here on
    log = EventLogger(args.log_format, args.log_level)
    try:
        if args.command == "process":
            from ade_engine.process import process_file

            return process_file(args, log)
        return config_validate(args, log)
    finally:
        log.flush()
