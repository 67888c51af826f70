"""`edgepose forget`: uninstall, the node's retained topics and Home Assistant device gone from the broker."""

from __future__ import annotations

import argparse

from ..errors import ExitCode
from .common import add_node_options, config_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "forget", help="uninstall: clear this node's retained topics and remove its Home Assistant device",
        description="Remove this node from the broker (install.sh --uninstall runs it once the service has "
                    "stopped): clears its retained topics (availability, person_count, state, stats, snapshot) "
                    "and removes its Home Assistant device. Exit 0 when the broker took it, 1 when it could not "
                    "be reached.")
    add_node_options(p, source=False)  # forget needs only the broker and the node's topics
    p.set_defaults(func=cmd_forget)


def cmd_forget(args: argparse.Namespace) -> int:
    """Uninstall: the node's retained topics and its Home Assistant device, gone from the broker."""
    from ..config import load_config
    from ..constants import TOPIC_AVAILABILITY, TOPIC_PERSON_COUNT, TOPIC_SNAPSHOT, TOPIC_STATE, TOPIC_STATS
    from ..core import Message
    from ..mqtt import forget
    from ..mqtt.discovery import discovery_removal_message
    from ..mqtt.topics import node_topic

    config = load_config(args.config, config_overrides(args))
    prefix, node = config.mqtt.topic_prefix, config.node.id
    cleared = [Message(node_topic(prefix, node, t), b"", qos=1, retain=True)
               for t in (TOPIC_AVAILABILITY, TOPIC_PERSON_COUNT, TOPIC_STATE, TOPIC_STATS, TOPIC_SNAPSHOT)]
    ok, detail = forget(config.mqtt, [discovery_removal_message(node, config.mqtt.discovery_prefix), *cleared])
    print(f"forget: {'ok' if ok else 'FAIL'} {detail}")
    return ExitCode.OK if ok else ExitCode.FAILURE
