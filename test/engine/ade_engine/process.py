"""``process file``: map the columns of a CSV input and report what was found."""

import csv
import io
import os
import re
import sys

from ade_engine import __version__
from ade_engine.config import load_fields
from ade_engine.directives import DirectiveRunner, split_directives

RECORD_ENV = "ADE_TEST_ENGINE_RECORD"
SEVERITIES = ("info", "warning", "error")
EXACT_SCORE = 1.0
FUZZY_SCORE = 0.6
MAX_ISSUE_EVENTS = 50


def normalize_header(raw):
    """Lowercase, trim, and turn runs of spaces/dashes into one underscore."""
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


def is_empty(value):
    return value.strip() == ""


def record_invocation(input_path):
    """Append ``<input path>\\n`` to $ADE_TEST_ENGINE_RECORD in one O_APPEND write."""
    target = os.environ.get(RECORD_ENV)
    if not target:
        return
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (input_path + "\n").encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


def map_column(normalized, fields):
    """Return the mapping dict of one column (exact beats fuzzy; FIELDS order breaks ties)."""
    for name, spec in fields.items():
        if normalized == name or normalized in (normalize_header(s) for s in spec["synonyms"]):
            return _mapping("mapped", name, EXACT_SCORE, "exact", None)
    for name in fields:
        if normalized and name in normalized:
            return _mapping("mapped", name, FUZZY_SCORE, "fuzzy", None)
    return _mapping("unmapped", None, None, None, "no_match")


def _mapping(status, field, score, method, reason):
    # "unmapped_reason" repeats "reason" under the name the original worker read.
    return {"status": status, "field": field, "score": score, "method": method,
            "reason": reason, "unmapped_reason": reason}


class Table:
    """The single table of a CSV sheet: header row plus data rows (padded)."""

    def __init__(self, text):
        rows = list(csv.reader(io.StringIO(text)))
        self.header = rows[0] if rows else []
        width = len(self.header)
        self.rows = [(row + [""] * width)[:width] for row in rows[1:]]
        self.width = width


def analyse(table, fields):
    """Column structure, validation issues and counts for one table."""
    columns = []
    for index, raw in enumerate(table.header):
        normalized = normalize_header(raw)
        non_empty = sum(1 for row in table.rows if not is_empty(row[index]))
        columns.append({
            "index": index,
            "header": {"raw": raw, "normalized": normalized},
            "non_empty_cells": non_empty,
            "mapping": map_column(normalized, fields),
        })

    empty_rows = [all(is_empty(cell) for cell in row) for row in table.rows]
    issues = []
    for col in columns:
        field = col["mapping"]["field"]
        if field is None:
            issues.append(_issue("info", "unmapped_column", "Column %r is not mapped to a field" % col["header"]["raw"], col["index"], None))
            continue
        for row_number, (row, row_is_empty) in enumerate(zip(table.rows, empty_rows), start=1):
            if row_is_empty:
                continue
            value = row[col["index"]]
            if is_empty(value):
                issues.append(_issue("warning", "missing_value", "Missing %s" % field, col["index"], row_number))
            elif field == "email" and "@" not in value:
                issues.append(_issue("error", "invalid_email", "Invalid email %r" % value, col["index"], row_number))
    return columns, empty_rows, issues


def _issue(severity, code, message, column, row):
    return {"severity": severity, "code": code, "message": message, "column": column, "row": row}


def build_summary(input_path, output_path, sheet_name, table, fields, columns, empty_rows, issues):
    """The ``engine.run.completed`` data (the contract the worker reads)."""
    mapped = [c for c in columns if c["mapping"]["status"] == "mapped"]
    total_cells = len(table.rows) * table.width
    non_empty_cells = sum(c["non_empty_cells"] for c in columns)

    field_entries = []
    for name, spec in fields.items():
        hits = [c for c in mapped if c["mapping"]["field"] == name]
        field_entries.append({
            "field": name,
            "label": spec["label"],
            "detected": bool(hits),
            "best_mapping_score": max(c["mapping"]["score"] for c in hits) if hits else None,
            "occurrences": {"tables": 1 if hits else 0, "columns": len(hits)},
        })
    detected = sum(1 for f in field_entries if f["detected"])

    by_severity = {s: sum(1 for i in issues if i["severity"] == s) for s in SEVERITIES}
    max_severity = next((s for s in reversed(SEVERITIES) if by_severity[s]), None)

    findings = [{"severity": "info", "code": "columns_mapped",
                 "message": "Mapped %d of %d columns" % (len(mapped), len(columns))}]
    for entry in field_entries:
        if not entry["detected"]:
            findings.append({"severity": "warning", "code": "field_not_detected",
                             "message": "Field %s was not detected" % entry["field"]})
    if non_empty_cells < total_cells:
        incomplete = sum(1 for row in table.rows if any(is_empty(cell) for cell in row))
        findings.append({"severity": "warning", "code": "empty_cells",
                         "message": "%d of %d cells are empty" % (total_cells - non_empty_cells, total_cells)})
        findings.append({"severity": "error", "code": "incomplete_rows",
                         "message": "%d of %d rows have empty cells" % (incomplete, len(table.rows))})
    if any(i["code"] == "invalid_email" for i in issues):
        findings.append({"severity": "error", "code": "invalid_email",
                         "message": "%d invalid email values" % sum(1 for i in issues if i["code"] == "invalid_email")})

    return {
        "schema_version": 1,
        "scope": "run",
        "status": "succeeded",
        "outputs": {"normalized": {"path": output_path}},
        "evaluation": {
            "outcome": "success" if detected == len(field_entries) else "partial",
            "findings": findings,
        },
        "validation": {
            "issues_total": len(issues),
            "issues_by_severity": by_severity,
            "max_severity": max_severity,
        },
        "counts": {
            "workbooks": 1,
            "sheets": 1,
            "tables": 1,
            "rows": {"total": len(table.rows), "empty": sum(empty_rows)},
            "columns": {
                "total": len(columns),
                "empty": sum(1 for c in columns if c["non_empty_cells"] == 0),
                "mapped": len(mapped),
                "unmapped": len(columns) - len(mapped),
            },
            "fields": {"expected": len(field_entries), "detected": detected,
                       "not_detected": len(field_entries) - detected},
            "cells": {"total": total_cells, "non_empty": non_empty_cells},
        },
        "fields": field_entries,
        "workbooks": [{
            "locator": _workbook_locator(input_path),
            "sheets": [{
                "locator": {"sheet": {"index": 0, "name": sheet_name}},
                "tables": [{
                    "locator": {"table": {"index": 0}},
                    "structure": {"columns": columns},
                }],
            }],
        }],
    }


def _workbook_locator(input_path):
    return {"workbook": {"index": 0, "name": os.path.basename(input_path)}}


def write_normalized(path, table, columns):
    header = [c["mapping"]["field"] or c["header"]["raw"] for c in columns]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(table.rows)


def _fail(log, message, exc, code=1):
    log.emit(
        "engine.run.failed",
        message,
        {"status": "failed", "exit_code": code},
        level="error",
        error={"type": type(exc).__name__, "message": str(exc), "traceback": _traceback()},
        always=True,
    )
    return code


def _traceback():
    import traceback  # only on failure: keeps start-up cheap

    return traceback.format_exc()


def process_file(args, log):
    """Run ``process file``; returns the exit code."""
    record_invocation(args.input)
    input_path = os.path.abspath(args.input)
    output_dir = os.path.abspath(args.output_dir)
    log.emit("engine.run.started", "Run started", {
        "input": input_path,
        "output_dir": output_dir,
        "config_package": args.config_package,
        "input_sheets": args.input_sheet or [],
        "active_sheet_only": args.active_sheet_only,
        "engine_version": __version__,
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "pid": os.getpid(),
    }, always=True)

    try:
        with open(input_path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        return _fail(log, "Cannot read input file %s" % input_path, exc)

    text = raw.decode("utf-8-sig", errors="replace")
    directives, text = split_directives(text)
    runner = DirectiveRunner(log, input_path, output_dir, raw.endswith(b"\n") or not raw)
    code = runner.run(directives)
    if code is not None:
        return code

    try:
        return _process(args, log, input_path, output_dir, text)
    except Exception as exc:  # report, never die with a bare traceback
        return _fail(log, "Run failed: %s" % exc, exc)


def _process(args, log, input_path, output_dir, text):
    fields, config_info = load_fields(args.config_package, log)
    log.emit("engine.config.loaded", "Configuration loaded", dict(
        config_info, config_package=args.config_package, fields=list(fields)))

    sheet_name = args.input_sheet[0] if args.input_sheet else os.path.splitext(os.path.basename(input_path))[0]
    workbook = _workbook_locator(input_path)
    sheet = dict(workbook, sheet={"index": 0, "name": sheet_name})
    table_locator = dict(sheet, table={"index": 0})

    log.emit("engine.workbook.started", "Workbook started", {"locator": workbook, "path": input_path})
    log.emit("engine.sheet.started", "Sheet %s started" % sheet_name, {"locator": sheet})
    table = Table(text)
    log.emit("engine.table.detected", "Table detected", {
        "locator": table_locator, "header_row": 0, "rows": len(table.rows), "columns": table.width})

    columns, empty_rows, issues = analyse(table, fields)
    for col in columns:
        mapping = col["mapping"]
        if mapping["status"] == "mapped":
            message = "Column %r mapped to %s (%s)" % (col["header"]["raw"], mapping["field"], mapping["method"])
        else:
            message = "Column %r not mapped" % col["header"]["raw"]
        log.emit("engine.column.mapped", message, {"locator": dict(table_locator, column={"index": col["index"]}), "column": col})
    if log.enabled("debug"):
        for issue in issues[:MAX_ISSUE_EVENTS]:
            log.emit("engine.validation.issue", issue["message"], {"locator": table_locator, "issue": issue}, level="debug")

    log.emit("engine.sheet.completed", "Sheet %s completed" % sheet_name, {
        "locator": sheet, "rows": len(table.rows), "columns": table.width})
    log.emit("engine.workbook.completed", "Workbook completed", {"locator": workbook, "sheets": 1})

    os.makedirs(output_dir, exist_ok=True)
    output_path = os.path.join(output_dir, "normalized.csv")
    write_normalized(output_path, table, columns)

    summary = build_summary(input_path, output_path, sheet_name, table, fields, columns, empty_rows, issues)
    log.emit("engine.run.completed", "Run completed", summary, always=True)
    return 0
