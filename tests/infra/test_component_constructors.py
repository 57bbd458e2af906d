"""Component constructors read as a table of contents (issue 16).

Each ComponentResource's ``__init__`` calls one short method per object (or
tight group of objects) it declares and ends with ``register_outputs``; a
constructor that grows past a screenful is where the next object's method
belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[2] / "infra" / "components"
#: Lines of a constructor, signature and docstring included.
MAX_CONSTRUCTOR_LINES = 80


def _constructors() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(COMPONENTS.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    found.append((f"{path.name}:{node.name}", item))
    return found


def _is_component(init: ast.FunctionDef) -> bool:
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "register_outputs"
        for call in ast.walk(init)
    )


COMPONENT_CONSTRUCTORS = [(where, init) for where, init in _constructors() if _is_component(init)]


def test_components_are_found() -> None:
    names = {where.split(":")[1] for where, _ in COMPONENT_CONSTRUCTORS}
    assert {"EksCluster", "Karpenter", "Network", "Database", "Cache", "Storage"} <= names


@pytest.mark.parametrize(
    "init", [init for _, init in COMPONENT_CONSTRUCTORS], ids=[w for w, _ in COMPONENT_CONSTRUCTORS]
)
def test_constructor_is_short_and_registers_outputs_last(init: ast.FunctionDef) -> None:
    length = init.end_lineno - init.lineno + 1 if init.end_lineno else 0
    assert length <= MAX_CONSTRUCTOR_LINES, (
        f"__init__ runs {length} lines: give each object it declares a method of its own"
    )
    assert _method_called(init.body[-1]) == "register_outputs", (
        "register_outputs must be the constructor's last statement"
    )


def _method_called(statement: ast.stmt) -> str | None:
    """The method a bare call statement (``x.method(...)``) calls, else None."""
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return None
    func = statement.value.func
    return func.attr if isinstance(func, ast.Attribute) else None
