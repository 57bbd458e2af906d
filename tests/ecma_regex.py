"""Regular expressions as a JSON Schema client reads them: ECMA-262, through node.

An OpenAPI document's ``pattern`` is an ECMA-262 regular expression; Python's
``re`` accepts syntax that ECMA-262 refuses or reads otherwise (``\\A``, ``\\Z``),
so the check runs in a JavaScript engine (Debian's nodejs, installed by
scripts/install-system-packages.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess

_SCRIPT = """
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = input.map(([pattern, probes]) => {
  try {
    const re = new RegExp(pattern, "u");
    return {matches: probes.map((p) => re.test(p))};
  } catch (e) {
    return {error: String(e.message)};
  }
});
process.stdout.write(JSON.stringify(out));
"""


def ecma_test(cases: list[tuple[str, list[str]]]) -> list[dict[str, object]]:
    """For each ``(pattern, probes)``: ``{"matches": [...]}`` (``RegExp.test`` of
    each probe, with the ``u`` flag) or ``{"error": message}`` when the pattern
    does not compile."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise RuntimeError("node is missing: run `make setup` (scripts/install-system-packages.sh)")
    answer = subprocess.run(
        [node, "-e", _SCRIPT],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: list[dict[str, object]] = json.loads(answer.stdout)
    return result
