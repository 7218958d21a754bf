"""Command line: ``python -m ade_engine {process file|config validate}``."""

import argparse
import sys

from ade_engine import __version__
from ade_engine.config import validate_package
from ade_engine.events import EventLogger, parse_level


def _level(value):
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
    args = build_parser().parse_args(argv)
    sys.stderr.flush()  # events go through sys.stderr.buffer from here on
    log = EventLogger(args.log_format, args.log_level)
    try:
        if args.command == "process":
            from ade_engine.process import process_file

            return process_file(args, log)
        return config_validate(args, log)
    finally:
        log.flush()
