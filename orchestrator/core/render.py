"""Rendering templates from `templates/` (shipped inside the package as `orchestrator.templates`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

import jinja2
import yaml

from orchestrator.core.script import quote


def resource_text(package: str, name: str) -> str:
    """Text of a file shipped with the package, e.g. resource_text("orchestrator.inventories", "local.yaml")."""
    return resources.files(package).joinpath(name).read_text()


class _PackageLoader(jinja2.BaseLoader):
    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, Optional[str], Optional[Callable[[], bool]]]:
        try:
            return resource_text("orchestrator.templates", template), None, lambda: True
        except FileNotFoundError:
            raise jinja2.TemplateNotFound(template) from None


def dot_quote(value: object) -> str:
    """A graphviz double-quoted string: quotes and backslashes escaped, newlines as centred line breaks."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=_PackageLoader(), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = quote  # every value put into a shell script
    env.filters["dq"] = dot_quote  # every value put into a graphviz DOT file
    return env


def render(template: str, **values: Any) -> str:
    """Render `templates/<template>` with `values`; a missing value is an error, not an empty string."""
    return environment().get_template(template).render(**values)


class PlainDumper(yaml.SafeDumper):
    """YAML as kubectl writes it: an object used twice is written twice, never as an anchor and alias
    (`&id001`, `*id001`), which a student editing the output would not expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """`data` as YAML in its own key order, without anchors."""
    return yaml.dump(data, Dumper=PlainDumper, sort_keys=False)
