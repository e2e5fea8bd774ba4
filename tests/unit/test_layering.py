"""Dependencies point inward: service modules import adapters only in the composition root."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"


def _module_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in tree.body:  # module level only: lazy imports inside functions are allowed
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_service_does_not_import_adapters_at_module_level() -> None:
    offenders = {
        str(p.relative_to(SERVICE.parent)): [n for n in _module_level_imports(p)
                                              if n.split(".")[0] == "adapters"]
        for p in SERVICE.rglob("*.py")
        if p.name != "bootstrap.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_service_does_not_import_torch_at_module_level() -> None:
    heavy = {"torch", "nnunetv2"}
    offenders = {
        str(p.relative_to(SERVICE.parent)): [n for n in _module_level_imports(p)
                                              if n.split(".")[0] in heavy]
        for p in SERVICE.rglob("*.py")
    }
    # the demo-model trainer subclasses an nnU-Net trainer; it is imported only when training
    allowed = {"service/training/demo_trainer.py"}
    assert {k: v for k, v in offenders.items() if v and k not in allowed} == {}
