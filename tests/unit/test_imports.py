"""The import rules of the layout, read from the source (ast), not from a running interpreter."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set:
    """The project modules `path` imports, at the top or inside a function (an import inside a function
    does not make a cycle go away, it only hides it)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("orchestrator"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                              else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("orchestrator"))
    return found - {here}


GRAPH = {module_name(p): project_imports(p) for p in ROOT.rglob("*.py")}


def test_no_import_cycle_anywhere():
    cycles, done = [], set()

    def visit(module, stack):
        if module in stack:
            cycles.append(" -> ".join(stack[stack.index(module):] + [module]))
            return
        if module in done:
            return
        for imported in sorted(GRAPH.get(module, ())):
            visit(imported, stack + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert cycles == []


def test_plan_code_touches_no_node_transport_or_apply_code():
    """plan/ is pure: no SSH, no agent calls, no providers. (It still reads two constants of the node agent,
    CNI_PATH and removal_block; the re-layering of issue 12 moves them.)"""
    allowed_from_agent = {"orchestrator.node_agent"}
    for module, imported in GRAPH.items():
        if module.startswith("orchestrator.plan."):
            bad = {m for m in imported if m.startswith(("orchestrator.transport", "orchestrator.apply",
                                                         "orchestrator.providers", "orchestrator.verify",
                                                         "orchestrator.cli"))}
            assert bad == set(), f"{module} imports {bad}"
            assert imported & {"orchestrator.node_agent"} <= allowed_from_agent


def test_the_node_agent_imports_only_the_standard_library():
    tree = ast.parse((ROOT / "node_agent.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(n.level for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    import sys
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names - set(sys.stdlib_module_names)
