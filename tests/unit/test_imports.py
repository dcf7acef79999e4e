"""The import rules of the layout (docs/architecture.md), read from the source (ast), not from a running
interpreter: no cycles; core is the bottom; no layer imports a later one; pure code imports nothing that
touches a node; the node agent is the standard library and itself; only two modules quote for a shell."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"
# the order of docs/architecture.md
LAYERS = ("nodes", "overlay", "podnet", "pods", "policy", "services", "dns", "gateway")
# Pure modules: they compute and compare; they never reach a node.
PURE = ("orchestrator", "orchestrator.core.crd_schema", "orchestrator.core.errors", "orchestrator.core.model",
        "orchestrator.core.inventory",
        "orchestrator.core.manifests", "orchestrator.core.ipam", "orchestrator.core.render",
        "orchestrator.core.script", "orchestrator.core.names", "orchestrator.core.policy_spec",
        "orchestrator.core.schema", "orchestrator.core.objects", "orchestrator.layers.nodes.facts",
        "orchestrator.layers.pods.namespaces", "orchestrator.core.events", "orchestrator.layers.pods.images",
        "orchestrator.core.patch", "orchestrator.layers.pods.env", "orchestrator.layers.nodes.shared_kernel",
        "orchestrator.layers.policy.enforcement", "orchestrator.layers.policy.trace", "orchestrator.layers.nodes.boot",
        "orchestrator.layers.nodes.packages", "orchestrator.layers.services.iptables", "orchestrator.lessons.model",
        "orchestrator.layers.services.nftables", "orchestrator.layers.services.trace")
SIDE_EFFECTS = ("orchestrator.core.transport", "orchestrator.core.agent", "orchestrator.core.state",
                "orchestrator.providers", "orchestrator.verify", "orchestrator.cli", "orchestrator.pipeline",
                "orchestrator.lessons")
ABOVE_LAYERS = ("orchestrator.kinds", "orchestrator.pipeline", "orchestrator.providers", "orchestrator.verify",
                "orchestrator.cli", "orchestrator.lessons")
KINDS = "orchestrator.kinds"  # the kind registry (pure) and one module per kind, above the layers
QUOTING = {"orchestrator.core.script", "orchestrator.core.transport"}


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


SOURCES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {module: project_imports(path) for module, path in SOURCES.items()}


def layer_of(module: str):
    parts = module.split(".")
    return LAYERS.index(parts[2]) if parts[1:2] == ["layers"] and len(parts) > 2 else None


def is_pure(module: str) -> bool:
    return module in PURE or module.endswith((".plan", ".changes")) or module in (f"{KINDS}.registry", f"{KINDS}.show")


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


def test_every_layer_folder_is_in_the_order():
    folders = {p.name for p in (ROOT / "layers").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS)


def test_no_layer_imports_a_later_layer_and_core_imports_no_layer():
    bad = []
    for module, imported in GRAPH.items():
        own = layer_of(module)
        for other in imported:
            theirs = layer_of(other)
            if module.startswith("orchestrator.core.") and not other.startswith(("orchestrator.core.",
                                                                                   "orchestrator.agent.contract")):
                bad.append(f"{module} -> {other}")
            elif own is not None and ((theirs is not None and theirs > own) or other.startswith(ABOVE_LAYERS)):
                bad.append(f"{module} -> {other}")
    assert bad == []


def test_pure_code_touches_no_node():
    """Plans and comparisons: no SSH, no agent calls, no lab files, no providers; of the node agent only the
    contract both sides share."""
    bad = []
    for module, imported in GRAPH.items():
        if is_pure(module):
            bad += [f"{module} -> {m}" for m in imported
                    if m.startswith(SIDE_EFFECTS) or (m.startswith("orchestrator.agent") and
                                                      m != "orchestrator.agent.contract")
                    or not (is_pure(m) or m == "orchestrator.agent.contract")]
    assert bad == []


def test_the_node_agent_imports_only_the_standard_library_and_itself():
    for module, path in SOURCES.items():
        if module.startswith("orchestrator.agent"):
            tree = ast.parse(path.read_text())
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module.split(".")[0] for n in ast.walk(tree)
                      if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
            assert names <= set(sys.stdlib_module_names) | {"__future__"}, f"{module}: {names}"


def test_only_two_modules_quote_for_a_shell():
    quoting = set()
    for module, path in SOURCES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "shlex"
                    and node.attr in ("quote", "join")):
                quoting.add(module)
    assert quoting <= QUOTING


def test_kinds_stand_between_the_layers_and_the_commands():
    """A kind module may use any layer (a kind whose objects change nodes calls its layer's appliers in its
    `converge`), never what stands above it: the pipeline, the commands, verify, providers, lessons."""
    above = tuple(m for m in ABOVE_LAYERS if m != KINDS)
    bad = [f"{module} -> {m}" for module, imported in GRAPH.items() if module.startswith(KINDS)
           for m in imported if m.startswith(above)]
    assert bad == []
