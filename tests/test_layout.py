"""The layout rule: the package mirrors the config groups, and the runner reaches the components
only through their interfaces. Checked by reading the sources and configs (`ast`, YAML); nothing
is imported or run, so the rule holds as the project grows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
NNRUN = ROOT / "nnrun"
COMPONENTS = ("data", "models", "optim", "tasks")  # model=, data=, task=, optimizer=, schedule=
RUNNER = {"__init__", "__main__", "api", "callbacks", "checkpoint", "cli", "console", "errors",
          "evaluate", "launch", "logger", "objective", "parallel", "report", "run", "rundir",
          "trainer"}
LEAVES = {"nnrun.errors", "nnrun.checkpoint"}  # the runner modules a component may use
TARGETS = {"model": ("nnrun.models.",), "data": ("nnrun.data.",), "task": ("nnrun.tasks.",),
           "optimizer": ("nnrun.optim.", "torch.optim."), "schedule": ("nnrun.optim.",)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an import-from names, relative imports (`from .x import y`) resolved."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.stem != "__init__":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of a source file as (module, names): `import a.b` gives ("a.b", []), and
    `from a import b`, where a is a package whose b is a module, gives ("a.b", [])."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, path)
            submodules = [a.name for a in node.names
                          if (ROOT / module.replace(".", "/") / a.name).with_suffix(".py").is_file()
                          or (ROOT / module.replace(".", "/") / a.name / "__init__.py").is_file()]
            found += [(f"{module}.{name}", []) for name in submodules]
            names = [a.name for a in node.names if a.name not in submodules]
            if names:
                found.append((module, names))
    return found


def component_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "nnrun" and parts[1] in COMPONENTS else None


def interface(component: str) -> set[str]:
    """The names a component package's `__init__` lists in `__all__`: its interface (helpers
    for the components themselves may stand beside it, unlisted)."""
    tree = ast.parse((NNRUN / component / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"nnrun/{component}/__init__.py has no __all__")


RUNNER_FILES = sorted(NNRUN.glob("*.py"))
COMPONENT_FILES = sorted(p for c in COMPONENTS for p in (NNRUN / c).rglob("*.py"))


def test_the_top_level_holds_the_runner_and_one_package_per_config_group():
    assert {p.stem for p in RUNNER_FILES} == RUNNER
    folders = {p.name for p in NNRUN.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(COMPONENTS)
    assert all((NNRUN / c / "__init__.py").is_file() for c in COMPONENTS)


@pytest.mark.parametrize("path", RUNNER_FILES, ids=lambda p: p.name)
def test_the_runner_imports_only_the_components_interfaces(path):
    for node in ast.walk(ast.parse(path.read_text())):  # `import nnrun.models` reaches it all
        if isinstance(node, ast.Import):
            assert not [a.name for a in node.names if component_of(a.name)], (
                f"{path.name}: import a component's interface by name, from nnrun.<package>")
    for module, names in imports(path):
        component = component_of(module)
        if component is None:
            continue
        assert module == f"nnrun.{component}", (
            f"{path.name} imports {module}: the runner uses only nnrun.{component}'s interface")
        assert set(names) <= interface(component), (
            f"{path.name} imports {sorted(set(names) - interface(component))} from "
            f"nnrun.{component}, which are not in its __all__")


@pytest.mark.parametrize("component", COMPONENTS)
def test_an_interface_imports_no_concrete_component(component):
    """Importing `nnrun.tasks` for `Task` must not pull in a model, dataset or task."""
    for module, names in imports(NNRUN / component / "__init__.py"):
        if module.startswith("nnrun"):
            assert module in LEAVES or module == f"nnrun.{component_of(module)}", module
            if component_of(module):
                assert set(names) <= interface(component_of(module))


@pytest.mark.parametrize("path", COMPONENT_FILES, ids=lambda p: module_name(p))
def test_components_use_no_runner_module_but_its_leaves(path):
    for module, _ in imports(path):
        if module.startswith("nnrun") and not component_of(module):
            assert module in LEAVES, f"{module_name(path)} imports the runner's {module}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_leaves_import_no_other_nnrun_module(leaf):
    path = ROOT / (leaf.replace(".", "/") + ".py")
    assert {m for m, _ in imports(path) if m.startswith("nnrun")} <= {"nnrun.errors"}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", RUNNER_FILES + COMPONENT_FILES, ids=lambda p: module_name(p))
def test_no_module_uses_a_private_name_of_another(path):
    tree = ast.parse(path.read_text())
    aliases = set()  # local names bound to nnrun modules or to names imported from them
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and absolute(node, path).startswith("nnrun"):
            names = [a.name for a in node.names if private(a.name)]
            assert not names, f"{module_name(path)} imports {names} from {node.module}"
            aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name.split(".")[0] for a in node.names
                        if a.name.startswith("nnrun")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):  # nnrun.data.batches._x
                root = root.value
            assert not (isinstance(root, ast.Name) and root.id in aliases), (
                f"{module_name(path)} uses {ast.unparse(node)}")


def targets() -> list[tuple[str, str, str]]:
    """(file, group, _target_) for every option of the component groups and every preset's
    group overrides."""
    found = []
    for group in TARGETS:
        for path in sorted((ROOT / "conf" / group).glob("*.yaml")):
            target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
            if target:
                found.append((str(path.relative_to(ROOT)), group, target))
    for path in sorted((ROOT / "experiments").rglob("*.yaml")):
        preset = yaml.safe_load(path.read_text()) or {}
        for group in TARGETS:
            target = (preset.get(group) or {}).get("_target_")
            if target:
                found.append((str(path.relative_to(ROOT)), group, target))
    return found


@pytest.mark.parametrize("where,group,target", targets())
def test_every_target_points_into_its_groups_package(where, group, target):
    assert target.startswith(TARGETS[group]), f"{where}: {group} {target}"
    assert target.count(".") >= 3 or target.startswith("torch."), (
        f"{where}: {target} names a component by its module, not the package interface")


def test_every_package_ships_in_the_wheel():
    listed = re.search(r"^packages = \[(.*?)\]$", (ROOT / "pyproject.toml").read_text(),
                       re.M | re.S)
    assert listed, "pyproject.toml lists its packages: packages = [...]"
    packages = set(re.findall(r'"([\w.]+)"', listed[1]))
    assert {f"nnrun.{c}" for c in COMPONENTS} <= packages
    assert "hydra_plugins.nnrun_plugins" in packages  # the launcher and sweeper Hydra loads


@pytest.mark.parametrize("path", sorted(p for p in COMPONENT_FILES if p.stem != "__init__"),
                         ids=lambda p: module_name(p))
def test_the_tests_mirror_the_components(path):
    test_file = ROOT / "tests" / path.parent.name / f"test_{path.stem}.py"
    assert test_file.is_file(), f"{module_name(path)} has no {test_file.relative_to(ROOT)}"
    tests = [n for n in ast.parse(test_file.read_text()).body
             if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert tests, f"{test_file.relative_to(ROOT)} holds no test"
