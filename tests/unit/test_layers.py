"""The layers of DESIGN.md section 2: a layer imports only the layers above it.

config, storage, runtimes, handler, replica, gateway, engine, operator, then client and CLI
(one layer: ``client.py``, ``sdk.py``, ``cli/``). The gateway and the engine are siblings:
neither imports the other (the local engine tells the gateway about replicas through
``inferd.types``). Every import counts, a lazy one inside a function or one for type checking
only included: each is a dependency of the module's code or of its types.
"""

from __future__ import annotations

import ast
from pathlib import Path

import inferd

ORDER = ("config", "storage", "runtimes", "handler", "replica", "gateway", "engine", "operator", "client")
RANK = {name: rank for rank, name in enumerate(ORDER)}
PACKAGE = Path(inferd.__file__).parent


def layer(module: str) -> str | None:
    """The layer of ``module`` (``inferd.gateway.queue``: gateway); None outside the layers."""
    parts = module.split(".")
    if parts[0] != "inferd" or len(parts) < 2:
        return None
    top = "client" if parts[1] in ("client", "sdk", "cli") else parts[1]
    return top if top in RANK else None


def imports(path: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "inferd" and not node.level:
            found += [
                (f"inferd.{alias.name}", node.lineno) for alias in node.names
            ]  # from inferd import engine
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
    return found


def violations(package: Path) -> tuple[int, list[str]]:
    """How many modules of ``package`` (a folder named ``inferd``) are in a layer, and their
    imports that break the rule."""
    wrong = []
    checked = 0
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        mine = layer(module)
        if mine is None:
            continue
        checked += 1
        for name, line in imports(path):
            theirs = layer(name)
            if theirs is None or theirs == mine:
                continue
            if RANK[theirs] > RANK[mine] or {mine, theirs} == {"gateway", "engine"}:
                wrong.append(f"{module}:{line} ({mine}) imports {name} ({theirs})")
    return checked, wrong


def test_each_layer_imports_only_the_layers_above_it() -> None:
    checked, wrong = violations(PACKAGE)
    assert checked > 100  # the walk found the package's modules
    assert not wrong, "\n".join(wrong)


def test_the_check_finds_a_wrong_import(tmp_path: Path) -> None:
    package = tmp_path / "inferd"
    (package / "gateway").mkdir(parents=True)
    (package / "replica").mkdir()
    (package / "gateway" / "x.py").write_text(
        "from inferd.replica.handle import ReplicaHandle\nfrom inferd.engine import local\n"
        "from inferd import codec, engine\n"
    )
    (package / "replica" / "y.py").write_text(
        "def later():\n    import inferd.operator.state\n    from inferd.errors import InferdError\n"
    )
    checked, wrong = violations(package)
    assert checked == 2
    assert wrong == [
        "inferd.gateway.x:2 (gateway) imports inferd.engine (engine)",
        "inferd.gateway.x:3 (gateway) imports inferd.engine (engine)",
        "inferd.replica.y:2 (replica) imports inferd.operator.state (operator)",
    ]
