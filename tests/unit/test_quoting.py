"""Shell text is built only in core/script.py (node scripts) and core/transport.py (the SSH command line),
read from the source (ast) of every other orchestrator module, the node agent included.

What counts as shell text (a "sink"):
- the line after a shell's `-c` (or `-ec`, `-euc`, ...) in a list or tuple literal naming sh/bash/dash, anywhere
  (an argv that starts a shell, whoever runs it: transport.run, subprocess, the agent);
- the lines of a `Change(what, lines)`, the text of `X.script(node, text)`, the command of
  `heredoc(command, text)`;
- the command of `subprocess.*(..., shell=True)`, `os.system` and `os.popen`.

What is built (a finding): an f-string with a value in it, `%` formatting of a string, `.format(...)`, or `+`
joining text (anything but string literals: `cmd(...) + " >/dev/null"` is `quiet(cmd(...))`, or `redirect`).

How text reaches a sink (data flow, simple and conservative): the sink's expression itself; its elements (lists,
tuples, comprehensions, both arms of `x if c else y`, `sep.join(...)`, `tuple(...)`, `list(...)`); a name, through
every assignment to it in the same function or at module level (`=`, `+=`, `.append`, `.extend`, `.insert`);
and a call of a function of the project, through its `return` values. Helpers of core/script.py quote what
they are given, so the analysis stops at them.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"
QUOTING = {"orchestrator.core.script", "orchestrator.core.transport"}
SHELLS = {"sh", "bash", "dash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash", "/bin/dash"}
# What returns quoted shell text, whatever it is given: the functions of core/script.py, the agent's command
# line (core/agent.py, through quote_argv) and templates (core/render.py: Jinja, every value through `q`).
SCRIPT_HELPERS = {n.name for n in ast.parse((ROOT / "core" / "script.py").read_text()).body
                  if isinstance(n, ast.FunctionDef)} | {"agent_command", "render"}
SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
FIX = ("build it from argv lists with the helpers of orchestrator/core/script.py (cmd(*argv), quote(word), "
       "pipe(...), redirect(...), heredoc(...)), or run the argv without a shell")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def is_shell_flag(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("-")
            and not node.value.startswith("--") and node.value.endswith("c") and node.value[1:].isalpha())


class Module:
    """One module's functions (by name, for calls) and, per scope, what is assigned to each name."""

    def __init__(self, name: str, source: str, path: str):
        self.name, self.path = name, path
        self.tree = ast.parse(source)
        self.functions: dict[str, list[ast.AST]] = {}
        self.imports: dict[str, tuple[str, str]] = {}  # local name -> (module, name) for `from X import name`
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (node.module, alias.name)

    def scope(self, node: ast.AST) -> ast.AST:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return node
        return self.tree

    def assigned(self, name: str, scope: ast.AST) -> Iterator[ast.AST]:
        """Every value assigned or added to `name` in `scope` (not in functions nested in it)."""
        found = False
        for node in self.walk_scope(scope):
            if isinstance(node, ast.Assign) and any(self.binds(t, name) for t in node.targets):
                found = True
                yield node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and self.binds(node.target, name) and node.value:
                found = True
                yield node.value
            elif isinstance(node, ast.NamedExpr) and node.target.id == name:
                found = True
                yield node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and isinstance(node.func.value, ast.Name) and node.func.value.id == name
                  and node.func.attr in ("append", "extend", "insert")):
                yield from node.args[-1:]
        if not found and scope is not self.tree:
            yield from self.assigned(name, self.scope(scope))

    @staticmethod
    def binds(target: ast.AST, name: str) -> bool:
        if isinstance(target, ast.Name):
            return target.id == name
        if isinstance(target, (ast.Tuple, ast.List)):  # a, b = x: x is looked at whole
            return any(Module.binds(t, name) for t in target.elts)
        return False

    @staticmethod
    def walk_scope(scope: ast.AST) -> Iterator[ast.AST]:
        todo = list(ast.iter_child_nodes(scope))
        while todo:
            node = todo.pop()
            yield node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                todo.extend(ast.iter_child_nodes(node))


class Checker:
    """Findings over a set of modules: (module path, line, what)."""

    def __init__(self, modules: dict[str, Module]):
        self.modules = modules
        self.findings: set[tuple[str, int, str]] = set()

    def run(self) -> list[str]:
        for module in self.modules.values():
            for node, why in sinks(module.tree):
                self.reach(module, node, why, set())
        return [f"{path}:{line}: {what}; {FIX}" for path, line, what in sorted(self.findings)]

    def reach(self, module: Module, node: ast.AST, why: str, seen: set) -> None:
        """Follow `node`, which reaches a sink (`why`), to the text it is built from."""
        if (module.name, id(node)) in seen:
            return
        seen.add((module.name, id(node)))
        built = built_text(node, self.safe_call)
        if built:
            self.findings.add((module.path, node.lineno, f"{built} reaches {why}"))
            return
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for elt in node.elts:
                self.reach(module, elt.value if isinstance(elt, ast.Starred) else elt, why, seen)
        elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            self.reach(module, node.elt, why, seen)
        elif isinstance(node, ast.IfExp):
            self.reach(module, node.body, why, seen)
            self.reach(module, node.orelse, why, seen)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.reach(module, value, why, seen)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            self.reach(module, node.left, why, seen)
            self.reach(module, node.right, why, seen)
        elif isinstance(node, ast.Starred):
            self.reach(module, node.value, why, seen)
        elif isinstance(node, ast.Name):
            for value in module.assigned(node.id, module.scope(node)):
                self.reach(module, value, why, seen)
        elif isinstance(node, ast.Call):
            name = call_name(node)
            if name in SCRIPT_HELPERS:
                return
            if name in ("join", "tuple", "list") and node.args:
                self.reach(module, node.args[0], why, seen)
            for owner, function in self.functions(module, node):
                for ret in ast.walk(function):
                    if isinstance(ret, ast.Return) and ret.value is not None and owner.scope(ret) is function:
                        self.reach(owner, ret.value, why, seen)

    def functions(self, module: Module, call: ast.Call) -> Iterator[tuple[Module, ast.AST]]:
        """The project functions `call` may call: by name in this module, or imported by name."""
        if isinstance(call.func, ast.Name):
            name = call.func.id
            if name in module.functions:
                yield from ((module, f) for f in module.functions[name])
            elif name in module.imports:
                owner_name, original = module.imports[name]
                owner = self.modules.get(owner_name)
                if owner is not None:
                    yield from ((owner, f) for f in owner.functions.get(original, []))
        elif isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name):
            if call.func.value.id == "self":  # a method of the same class, by name
                yield from ((module, f) for f in module.functions.get(call.func.attr, []))
            elif call.func.value.id in module.imports:  # from orchestrator.x import y; y.f(...)
                owner_name, original = module.imports[call.func.value.id]
                owner = self.modules.get(f"{owner_name}.{original}")
                if owner is not None:
                    yield from ((owner, f) for f in owner.functions.get(call.func.attr, []))

    @staticmethod
    def safe_call(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and call_name(node) in SCRIPT_HELPERS


def is_text(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def built_text(node: ast.AST, safe_call) -> Optional[str]:
    """What makes `node` text built by formatting, or None."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "an f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and is_text(node.left):
        return "`%` formatting"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return "`.format(...)`"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        operands = []

        def flatten(n):
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
                flatten(n.left)
                flatten(n.right)
            else:
                operands.append(n)
        flatten(node)
        if any(is_text(o) or safe_call(o) for o in operands):  # text, not lists
            for o in operands:
                inner = built_text(o, safe_call)
                if inner:
                    return inner
            if not all(isinstance(o, ast.Constant) for o in operands):
                return "`+` joining shell text"
    return None


def sinks(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every expression whose value a shell reads as a command, with what kind of sink it is."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            elts = node.elts
            shell_at = next((i for i, e in enumerate(elts) if isinstance(e, ast.Constant) and e.value in SHELLS),
                            None)
            if shell_at is not None:
                for i in range(shell_at + 1, len(elts) - 1):
                    if is_shell_flag(elts[i]):
                        yield elts[i + 1], f"a shell's -c (`{elts[shell_at].value} {elts[i].value} ...`)"
                        break
        elif isinstance(node, ast.Call):
            name = call_name(node)
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "Change":
                lines = node.args[1] if len(node.args) > 1 else keywords.get("lines")
                if lines is not None:
                    yield lines, "the lines of a Change"
            elif name == "script" and isinstance(node.func, ast.Attribute) and len(node.args) > 1:
                yield node.args[1], "a script run on a node"
            elif name == "heredoc" and node.args:
                yield node.args[0], "the command of a heredoc"
            elif (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                  and node.func.value.id == "subprocess" and name in SUBPROCESS and node.args
                  and isinstance(keywords.get("shell"), ast.Constant) and keywords["shell"].value is True):
                yield node.args[0], "a shell (subprocess shell=True)"
            elif (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                  and node.func.value.id == "os" and name in ("system", "popen") and node.args):
                yield node.args[0], f"a shell (os.{name})"


def check_sources(sources: dict[str, tuple[str, str]]) -> list[str]:
    """Findings for modules given as name -> (source, path shown)."""
    modules = {name: Module(name, source, path) for name, (source, path) in sources.items()}
    checker = Checker(modules)
    findings = checker.run()
    return [f for f in findings if not any(f.startswith(modules[q].path + ":") for q in QUOTING if q in modules)]


def project_sources() -> dict[str, tuple[str, str]]:
    return {module_name(p): (p.read_text(), str(p.relative_to(ROOT.parent))) for p in sorted(ROOT.rglob("*.py"))}


def test_shell_text_is_built_only_by_the_two_quoting_modules():
    findings = check_sources(project_sources())
    assert findings == [], "shell text built outside core/script.py and core/transport.py:\n" + "\n".join(findings)


# The checker, on small sources: it finds what it must, and only that.

def findings_of(source: str, **others: str) -> list[str]:
    sources = {"orchestrator.sample": (textwrap.dedent(source), "sample.py")}
    sources.update({name: (textwrap.dedent(text), name + ".py") for name, text in others.items()})
    return check_sources(sources)


def test_an_f_string_after_sh_c_is_found():
    found = findings_of("""
        def f(t, node, path):
            t.run(node, ["sh", "-c", f"cat {path} | wc -l"])
    """)
    assert len(found) == 1 and found[0].startswith("sample.py:3: an f-string reaches a shell's -c")
    assert "core/script.py" in found[0]


def test_text_is_followed_through_names_lists_and_appends():
    found = findings_of("""
        def f(t, node, lib, names):
            lines = [cmd("mkdir", "-p", lib)]
            lines.append("rm -f %s" % lib)
            lines += ["echo {}".format(n) for n in names]
            script = "; ".join(lines)
            argv = ["bash", "-ec", script]
            t.run(node, argv)
    """)
    assert [f.split(":")[1] for f in found] == ["4", "5"]


def test_changes_heredocs_scripts_subprocess_and_plus_are_sinks():
    found = findings_of("""
        import os, subprocess
        def f(t, node, lab, m, text):
            Change("load", (cmd("modprobe", m), f"echo {m} >> /x"))
            Change(what="w", lines=["tac " + lab, cmd("tac", lab) + " >/dev/null", "tac " + " x"])
            heredoc(f"nft -f - # {lab}", text)
            t.script(node, "ip link del " + m)
            subprocess.run(f"kill {m}", shell=True)
            os.system("kill %d" % m)
    """)
    assert [f.split(":")[1] for f in found] == ["4", "5", "6", "7", "8", "9"]


def test_returned_text_is_followed_into_the_function_and_across_modules():
    found = findings_of("""
        from orchestrator.other import lines_of
        def script(lab):
            return f"rm -rf /var/lib/{lab}"
        def f(t, node, lab):
            Change("x", (script(lab), *lines_of(lab)))
    """, **{"orchestrator.other": """
        def lines_of(lab):
            return [f"echo {lab}"]
    """})
    assert sorted(f.split(":")[0:2] for f in found) == [["orchestrator.other.py", "3"], ["sample.py", "4"]]


def test_quoted_text_argv_and_data_are_not_findings():
    assert findings_of("""
        def f(t, node, lab, m, rules):
            t.run(node, ["ip", "link", "del", f"vx-{m}"])  # an argv word, no shell
            t.run(node, ["nft", "-f", "-"], stdin=f"table ip {lab} {{}}")  # data on stdin
            t.run(node, ["sh", "-c", redirect(cmd("nft", "delete", "table", "ip", lab), stderr="/dev/null")])
            Change(f"install {lab}", (cmd("modprobe", m), "systemctl daemon-reload"))
            print(f"{lab}: {m}")
            t.run(node, ["bash", "-c", 'script=$(cat) && eval "$script"'], stdin=render_script(rules))
    """) == []


def test_the_script_helpers_keep_every_path_one_word(tmp_path):
    import subprocess
    from orchestrator.core.script import cmd, pipe, quiet, redirect
    odd = tmp_path / "a b;$(touch pwned)'x"
    line = pipe(cmd("printf", "%s\\n", "vxlan", "nf tables"), "tac")
    assert line == "printf '%s\\n' vxlan 'nf tables' | tac"
    script = "\n".join([redirect(line, append=str(odd)), redirect(cmd("cat", str(odd)), stdout=str(odd) + ".out"),
                        quiet(cmd("echo", "hidden")), redirect(cmd("ls", str(tmp_path / "none")), stderr="/dev/null")
                        + " || true"])
    done = subprocess.run(["bash", "-ec", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert (tmp_path / (odd.name + ".out")).read_text() == "nf tables\nvxlan\n"
    assert not (tmp_path / "pwned").exists()


def test_a_command_goes_through_a_wrapper_only_where_it_exists_and_its_words_stay_words(tmp_path):
    import subprocess
    from orchestrator.core.script import through_if_present
    odd = tmp_path / "a b;$(touch pwned)"
    logger = ["sh", "-c", 'echo "wrapped:$#"; exec "$@"', "wrapper"]
    command = ["printf", "%s|", "one word", "$(touch pwned)"]
    absent = subprocess.run(["sh", "-c", through_if_present(str(odd), logger), "sh", *command], cwd=tmp_path,
                            capture_output=True, text=True)
    assert absent.stdout == "one word|$(touch pwned)|"
    odd.write_text("")
    present = subprocess.run(["sh", "-c", through_if_present(str(odd), logger), "sh", *command], cwd=tmp_path,
                             capture_output=True, text=True)
    assert present.stdout == "wrapped:4\none word|$(touch pwned)|"
    assert not (tmp_path / "pwned").exists()
