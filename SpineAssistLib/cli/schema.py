"""``spineassist schema``: print or check findings.json files against the shipped JSON Schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from SpineAssistLib.errors import SpineAssistError
from SpineAssistLib.findings import Assessment, findings_schema, validate_findings_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the findings.json schema, or validate findings files against it",
                       description="Without files, print the JSON Schema of findings.json. With files, "
                       "check each one (schema and value rules) and say what is wrong.")
    p.add_argument("files", nargs="*", type=Path, help="findings.json or truth.json files to validate")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.files:
        print(json.dumps(findings_schema(), indent=2))
        return 0
    bad = 0
    for path in args.files:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            validate_findings_json(data)
            Assessment.from_dict(data)
        except FileNotFoundError:
            raise SpineAssistError(f"{path} does not exist") from None
        except (ValueError, TypeError, KeyError) as e:
            bad += 1
            print(f"{path}: INVALID: {e}")
            continue
        print(f"{path}: valid {data['schema']}, {len(data['levels'])} levels")
    return 2 if bad else 0
