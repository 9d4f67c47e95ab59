"""The layout rule: the package mirrors the config groups, and the runner reaches the components
only through their interfaces. Checked by reading the sources and configs (`ast`, YAML); nothing
is imported or run, so the rule holds as the project grows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
NNRUN = ROOT / "nnrun"
COMPONENTS = ("data", "models", "optim", "tasks")  # model=, data=, task=, optimizer=, schedule=
RUNNER = {"__init__", "__main__", "callbacks", "checkpoint", "cli", "console", "errors",
          "logger", "report", "run", "trainer"}
LEAVES = {"nnrun.errors", "nnrun.checkpoint"}  # the runner modules a component may use
TARGETS = {"model": ("nnrun.models.",), "data": ("nnrun.data.",), "task": ("nnrun.tasks.",),
           "optimizer": ("nnrun.optim.", "torch.optim."), "schedule": ("nnrun.optim.",)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of a source file as (module, names); `import a.b` gives ("a.b", [])."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "nnrun":  # from nnrun import x
            found += [(f"nnrun.{alias.name}", []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def component_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "nnrun" and parts[1] in COMPONENTS else None


def interface(component: str) -> set[str]:
    """The names a component package's `__init__` lists in `__all__`."""
    tree = ast.parse((NNRUN / component / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"nnrun/{component}/__init__.py has no __all__")


RUNNER_FILES = sorted(NNRUN.glob("*.py"))
COMPONENT_FILES = sorted(p for c in COMPONENTS for p in (NNRUN / c).glob("*.py"))


def test_the_top_level_holds_the_runner_and_one_package_per_config_group():
    assert {p.stem for p in RUNNER_FILES} == RUNNER
    packages = {p.name for p in NNRUN.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(COMPONENTS)


@pytest.mark.parametrize("path", RUNNER_FILES, ids=lambda p: p.name)
def test_the_runner_imports_only_the_components_interfaces(path):
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


@pytest.mark.parametrize("path", RUNNER_FILES + COMPONENT_FILES, ids=lambda p: module_name(p))
def test_no_module_uses_a_private_name_of_another(path):
    tree = ast.parse(path.read_text())
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nnrun"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{module_name(path)} imports {private} from {node.module}"
            aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name.split(".")[0] for a in node.names
                        if a.name.startswith("nnrun")}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            raise AssertionError(f"{module_name(path)} uses {node.value.id}.{node.attr}")


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


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_package_ships_in_the_wheel(component):
    assert f'"nnrun.{component}"' in (ROOT / "pyproject.toml").read_text()  # packages = [...]


@pytest.mark.parametrize("path", sorted(p for p in COMPONENT_FILES if p.stem != "__init__"),
                         ids=lambda p: module_name(p))
def test_the_tests_mirror_the_components(path):
    assert (ROOT / "tests" / path.parent.name / f"test_{path.stem}.py").is_file()
