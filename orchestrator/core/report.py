"""What a lab command did on each node: the report `lab deploy`, `lab destroy` and `lab fix` print, one row a
node (ok, changed, would change, removed, failed), filled in by every layer that changes the node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class NodeReport:
    node: str
    status: str  # ok | changing | changed | would change | removed | failed
    changes: list[str] = field(default_factory=list)  # what was (or would be) done, in words
    error: Optional[str] = None
    subnet: Optional[str] = None  # the node's pod CIDR


Reports = dict[str, NodeReport]  # node name -> its report
