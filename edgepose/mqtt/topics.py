"""Where the node's messages go: ``<topic_prefix>/<node_id>/<suffix>``.

Message builders (messages.py) name only the suffix (constants.TOPIC_*); the
client puts the whole topic together here. Home Assistant discovery topics are
the exception: they live under the discovery prefix (discovery.py).
"""

from __future__ import annotations

import re

from ..constants import NODE_ID_PATTERN

_NODE_ID = re.compile(NODE_ID_PATTERN)


def is_node_id(text: str) -> bool:
    """Whether `text` is a valid node id (constants.NODE_ID_PATTERN, the one rule)."""
    return bool(_NODE_ID.fullmatch(text))


def node_topic(prefix: str, node_id: str, suffix: str) -> str:
    """``<prefix>/<node_id>/<suffix>``: the one place topics are put together."""
    return f"{prefix}/{node_id}/{suffix}"
