"""Protocol cores are sans-I/O: they must not import sockets, TLS, asyncio or the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "mailpost"
SANS_IO_MODULES = sorted(
    [path for path in (SRC / "smtp").glob("*.py") if path.name not in ("session.py",)]
    + [SRC / "auth" / "sasl.py"]
    + [path for path in (SRC / "pop3").glob("*.py") if path.name not in ("session.py",)]
    + [path for path in (SRC / "imap").glob("*.py")
       if path.name not in ("session.py", "selected.py")]
)
# Plain value types (store.types: frozen dataclasses, no I/O) may be shared with the cores.
ALLOWED = ("mailpost.store.types",)
FORBIDDEN = ("asyncio", "socket", "ssl", "selectors", "mailpost.store", "mailpost.net",
             "mailpost.delivery", "mailpost.app", "sqlite3")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SANS_IO_MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_protocol_core_does_no_io(path: Path) -> None:
    for name in imported_modules(path) - set(ALLOWED):
        assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), \
            f"{path.name} imports {name}"


def test_the_list_is_not_empty() -> None:
    assert any(path.name == "protocol.py" for path in SANS_IO_MODULES)
