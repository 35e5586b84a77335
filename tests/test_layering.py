"""Imports run one way (STYLE.md): low-level numerics never import the facade, the runner or the CLI."""

import ast
import pathlib

import certunlearn

PACKAGE = pathlib.Path(certunlearn.__file__).parent

# Lower rank = lower layer; a module may import only modules of a strictly lower rank (or itself).
RANK = {
    "losses": 0, "data": 0, "calibration": 0, "accounting": 0, "distributed": 0,
    "objective": 1, "models": 1,
    "hessian": 2, "solvers": 2,
    "curvature": 3,
    "train": 4, "removal": 4,
    "api": 5,
    "evaluate": 6, "audit": 7, "modify": 6, "head": 6, "deep": 6,
    "runner": 8, "figures": 8, "demo": 8, "audit_sweep": 9,
    "families": 9, "cli": 10, "__main__": 11,
}
HOST_ONLY = {"data", "calibration", "accounting"}  # no JAX: usable without an accelerator stack


def _imports(path):
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "certunlearn":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("certunlearn."):
                found.add(node.module.split(".")[1])
            else:
                found.add("<ext>" + node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found.add(parts[1] if parts[0] == "certunlearn" and len(parts) > 1 else "<ext>" + parts[0])
    return found


def test_every_module_has_a_rank():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= set(RANK), f"add {sorted(modules - set(RANK))} to RANK"


def test_imports_point_down():
    violations = []
    for path in [*PACKAGE.glob("*.py"), *PACKAGE.glob("families/*.py")]:
        name = "families" if path.parent.name == "families" else path.stem
        if path.stem == "__init__" and name != "families":
            continue
        for dep in _imports(path):
            if dep.startswith("<ext>") or dep not in RANK:
                continue
            if dep != name and RANK[dep] >= RANK[name]:
                violations.append(f"{name} (rank {RANK[name]}) imports {dep} (rank {RANK[dep]})")
    assert not violations, "\n".join(violations)


def test_host_side_modules_do_not_import_jax():
    for name in HOST_ONLY:
        deps = _imports(PACKAGE / f"{name}.py")
        assert "<ext>jax" not in deps and "<ext>jaxlib" not in deps, name
