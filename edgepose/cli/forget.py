"""`edgepose forget`: uninstall: clear this node's retained topics and remove its Home Assistant device

Remove this node from the broker (install.sh --uninstall runs it once the service has stopped):
clears its retained topics (availability, person_count, state, stats, snapshot) and removes its
Home Assistant device. Exit 0 when the broker took it, 1 when it could not be reached.
"""

from __future__ import annotations

import argparse

from ..errors import ExitCode
from .common import add_node_options, config_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_node_options(parser, source=False)  # forget needs only the broker and the node's topics


def main(args: argparse.Namespace) -> int:
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
