"""Each DVC stage's deps name exactly the code it runs: every pcas_core module its script imports
(transitively, package __init__ files included) is covered by a dep, and every pcas_core dep is
imported, so a code change reruns every stage it touches and no other."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[Path]:
    """pcas_core/stages files that ``path`` imports anywhere (top level or inside functions)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                  + ([module] if module else []))
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        for name in names:
            if not name.startswith(("pcas_core", "stages")):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # parent packages run their __init__ too
                file = _module_file(".".join(parts[:i]))
                if file is not None:
                    found.add(file)
    return found


def _closure(script: Path) -> set[Path]:
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path) - seen)
    return seen


def _code_deps(stage: dict) -> list[Path]:
    return [ROOT / d for d in stage.get("deps", []) if d.startswith(("pcas_core", "stages"))]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_exactly_its_imports(name):
    stage = STAGES[name]
    script = ROOT / "stages" / f"{name}.py"
    assert script.is_file(), f"stage {name}: expected its script at {script}"
    deps = _code_deps(stage)
    assert script in deps, f"stage {name}: deps lack its own script"
    imported = {p for p in _closure(script) if p.parts[len(ROOT.parts)] == "pcas_core"}
    uncovered = sorted(str(p.relative_to(ROOT)) for p in imported
                       if not any(p == d or d in p.parents for d in deps))
    assert not uncovered, f"stage {name}: imports {uncovered} but dvc.yaml deps do not list them"
    unused = sorted(str(d.relative_to(ROOT)) for d in deps
                    if d != script and not any(p == d or d in p.parents for p in imported))
    assert not unused, f"stage {name}: dvc.yaml deps list {unused}, which it never imports"


#: the layers every stage shares, listed in dvc.yaml as folders; everything else file by file, so
#: that a change to one stage's method or pipeline module reruns that stage alone
SHARED_LAYERS = {"pcas_core/data", "pcas_core/params", "pcas_core/runtime", "pcas_core/storage"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_only_the_shared_layers_are_folder_deps(name):
    folders = {str(d.relative_to(ROOT)) for d in _code_deps(STAGES[name]) if d.is_dir()}
    assert folders <= SHARED_LAYERS, f"stage {name}: folder deps {sorted(folders - SHARED_LAYERS)}"
    files = [d for d in _code_deps(STAGES[name]) if d.is_file()]
    inside = [str(d.relative_to(ROOT)) for d in files if any(str(d.relative_to(ROOT)).startswith(f + "/")
                                                              for f in SHARED_LAYERS)]
    assert not inside, f"stage {name}: {inside} are covered by their layer's folder"


def _start_stage_sections(script: Path) -> list[str]:
    """The section names and dotted keys a stage script passes to ``start_stage``."""
    tree = ast.parse(script.read_text())
    constants = {t.id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
                 and isinstance(node.value, (ast.Tuple, ast.List, ast.Constant))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "start_stage":
            out = []
            for arg in node.args[2:]:
                if isinstance(arg, ast.Starred):
                    out += list(constants[arg.value.id])
                else:
                    out.append(ast.literal_eval(arg))
            return out
    raise AssertionError(f"{script}: no start_stage call")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_what_the_stage_reads(name):
    """dvc.yaml's params of a stage (sections and dotted keys) are those its script reads, so a
    change of any other key does not rerun it and a change of one it reads does."""
    listed = set(STAGES[name].get("params", [])) - {"base"}
    assert listed == set(_start_stage_sections(ROOT / "stages" / f"{name}.py")), name
