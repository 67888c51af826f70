"""The MQTT adapter: the only package that imports paho-mqtt (>= 2).

    client.py     MqttPublisher: the connection, availability, paho's callbacks
    delivery.py   the three paths: retained state, the live stream, the outbox's acked QoS 1
    commands.py   cmd/<name> messages -> command names (parsing, cooldowns, bounded logs)
    discovery.py  Home Assistant device discovery, and keeping it in step with the config
    transport.py  paho's client with the packet bound, TLS, back-off and connect-error causes
    topics.py     <topic_prefix>/<node_id>/<suffix>
    admin.py      one-shot connections: `probe` (edgepose check), `forget` (uninstall)

What goes in a message is messages.py's business; this package only moves it.
"""

from __future__ import annotations

from .admin import forget, probe
from .client import MqttPublisher
from .transport import PROTOCOLS, connect_error_cause, new_client

__all__ = ["MqttPublisher", "PROTOCOLS", "connect_error_cause", "forget", "new_client", "probe"]
