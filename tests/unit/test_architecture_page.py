"""docs/architecture.md names every module under orchestrator/, and names none that does not exist.

The rule: the page's first code block is the tree. A line whose first word ends in `/` (`core/`,
`  nodes/`) opens that folder's block, inside the folder of the nearest opening line indented less; every
other line belongs to the block open above it. Each module file `orchestrator/<folder>/<name>.py` (but
`__init__.py` and `__main__.py`) must appear as `<name>.py` in the block of `<folder>/`, and each package
`orchestrator/<folder>/<name>/` must open a block `<name>/` inside `<folder>/`. Conversely every `<name>.py`
in a block under orchestrator/ must be a file of that folder, and every opened folder a package.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "architecture.md"
OPENS = re.compile(r"^( *)(\S+/)(?:\s|$)")
FILE = re.compile(r"(?<![\w./])(\w+)\.py\b")


def tree_blocks(text: str) -> dict[str, str]:
    """folder ("orchestrator/layers/nodes/") -> the text of its block in the page's first code block."""
    tree = text.split("```", 2)[1]
    blocks: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, folder) of the open blocks
    for line in tree.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        opened = OPENS.match(line)
        if opened:
            stack.append((indent, (stack[-1][1] if stack else "") + opened.group(2)))
        if stack:
            blocks[stack[-1][1]] = blocks.get(stack[-1][1], "") + line + "\n"
    return blocks


def modules(root: Path) -> tuple[set[str], set[str]]:
    """The module files ("orchestrator/core/model.py") and packages ("orchestrator/core/") of the source."""
    files = {p.relative_to(root.parent).as_posix() for p in root.rglob("*.py")
             if p.name not in ("__init__.py", "__main__.py")}
    packages = {p.parent.relative_to(root.parent).as_posix() + "/" for p in root.rglob("__init__.py")}
    return files, packages


def differences(text: str, root: Path) -> list[str]:
    blocks = tree_blocks(text)
    files, packages = modules(root)
    named_files = {folder + name + ".py" for folder, block in blocks.items() if folder.startswith("orchestrator/")
                   for name in FILE.findall(block)}
    named_packages = {folder for folder in blocks if folder.startswith("orchestrator/")}
    return ([f"{m} is not named in docs/architecture.md (as {Path(m).name} in the block of {Path(m).parent}/)"
             for m in sorted(files - named_files)] +
            [f"{p} is not named in docs/architecture.md (as a block {Path(p).name}/ in {Path(p).parent}/)"
             for p in sorted(packages - named_packages)] +
            [f"docs/architecture.md names {m}, which does not exist" for m in sorted(named_files - files)] +
            [f"docs/architecture.md names the package {p}, which does not exist"
             for p in sorted(named_packages - packages)])


def test_the_page_names_every_module_and_only_modules_that_exist():
    problems = differences(PAGE.read_text(), REPO / "orchestrator")
    assert not problems, "\n".join(problems)


def test_a_missing_and_an_invented_module_are_both_named(tmp_path):
    root = tmp_path / "orchestrator"
    for path in ("__init__.py", "pipeline.py", "core/__init__.py", "core/model.py", "core/state.py"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")
    page = ("# A\n\n```\norchestrator/\n  core/   model.py (Cluster), ghost.py\n"
            "          pipeline.py is named here, in core's block\n  pipeline.py  the order\n```\n")
    assert differences(page, root) == [
        "orchestrator/core/state.py is not named in docs/architecture.md (as state.py in the block of "
        "orchestrator/core/)",
        "docs/architecture.md names orchestrator/core/ghost.py, which does not exist",
        "docs/architecture.md names orchestrator/core/pipeline.py, which does not exist"]
