"""``spineassist schema``: print the findings.json JSON Schema, or check findings.json files against it.

A check also compares each finding's value in force (the flat value a reader of the file sees
first) with its model and reader values: SpineAssist writes them in agreement, so a disagreement
means the file was edited by hand, and loading it would take that value as a reader correction.

Usage::

    spineassist schema                          # print the schema
    spineassist schema --check out/findings.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import FLAT_EDIT_READER, Assessment, findings_schema, validate_findings_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the findings.json schema, or check findings files against it",
                       description="Without files, print the JSON Schema of findings.json. With files (given "
                       "plainly or after --check), check each one: the schema, the value rules, and whether "
                       "each value in force agrees with its model and reader values. Exit status 0 when every "
                       "file passes, 2 when one does not.")
    p.add_argument("files", nargs="*", type=Path, help="findings.json or truth.json files to check")
    p.add_argument("--check", dest="check_files", action="append", type=Path, default=[], metavar="FILE",
                   help="a findings.json or truth.json file to check (may be repeated)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = [*args.files, *getattr(args, "check_files", [])]
    if not files:
        print(json.dumps(findings_schema(), indent=2))
        return 0
    bad = 0
    for path in files:
        if not check_file(Path(path)):
            bad += 1
    return 2 if bad else 0


def check_file(path: Path) -> bool:
    """Print what is wrong with one findings file (one line per problem); return True when nothing is."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpineAssistError(f"{path} does not exist") from None
    except IsADirectoryError:
        hint = (f"; check {path / 'findings.json'}" if (path / "findings.json").is_file()
                else "; give the findings.json file inside it")
        print(f"{path}: INVALID: a folder, not a findings file{hint}")
        return False
    except OSError as e:
        print(f"{path}: INVALID: cannot be read ({e.strerror or type(e).__name__})")
        return False
    except ValueError as e:     # not JSON, or not UTF-8 text
        print(f"{path}: INVALID: not a JSON file ({e})")
        return False
    try:
        validate_findings_json(data)
        assessment = Assessment.from_dict(data)
    except (ValueError, TypeError, KeyError) as e:
        print(f"{path}: INVALID: {e}")
        return False
    if assessment.flat_edits:
        for edit in assessment.flat_edits:
            print(f"{path}: {edit.line()}")
        n = len(assessment.flat_edits)
        print(f"{path}: INCONSISTENT: {n} value{'s' if n > 1 else ''} in force disagree{'s' if n == 1 else ''} with "
              f"the model and reader values, so the file was edited by hand; loading it, SpineAssist takes an edited "
              f"value as a correction by {FLAT_EDIT_READER!r} (an emptied one stays as it was): confirm it there, "
              f"or write the reader's (else the model's) value back")
        return False
    print(f"{path}: valid {data['schema']}, {len(data['levels'])} levels")
    return True
