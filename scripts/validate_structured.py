#!/usr/bin/env python3
"""Validates constrained outputs against their JSON Schemas with python3-jsonschema (Debian's
package): an independent check of troupe's schema compiler.

Usage: validate_structured.py SCHEMAS.json OUTPUTS.jsonl
Each line of OUTPUTS is {"schema": name, "id", "finish", "text"}; outputs that ended
(finish "stop") must parse as JSON and validate. Prints 'N passed, N failed'."""
import json
import sys

import jsonschema


def main():
    schemas = {s["name"]: s["schema"] for s in json.load(open(sys.argv[1]))}
    passed = failed = truncated = 0
    for line in open(sys.argv[2]):
        out = json.loads(line)
        if out["finish"] != "stop":
            truncated += 1
            continue
        schema = schemas[out["schema"]]
        try:
            jsonschema.validate(json.loads(out["text"]), schema,
                                cls=jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator))
            passed += 1
        except (ValueError, jsonschema.ValidationError) as e:
            failed += 1
            print(f"FAIL {out['id']}: {out['text']!r}: {e}", file=sys.stderr)
    print(f"{truncated} cut by max_tokens (not checked)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    main()
