"""One-shot connections for the command line: ``edgepose check`` (`probe`) and
``edgepose forget`` (`forget`), without the daemon's client and its threads."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from ..config import MqttConfig
from ..core import Message
from ..errors import ConfigError
from .transport import new_client


def probe(mqtt_cfg: MqttConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """Try one real connection; (True, "connected to ...") or (False, why not).

    For ``edgepose check``: the reason names the host and port and says what
    went wrong (refused, unresolvable, timed out, TLS, credentials).
    """
    host, port = mqtt_cfg.host, mqtt_cfg.port
    where = f"{host}:{port}"
    # Not the daemon's own id: the broker would drop a running daemon to let us in.
    client_id = f"{mqtt_cfg.client_id}-check" if mqtt_cfg.client_id else ""
    try:
        client = new_client(mqtt_cfg, client_id)
    except ConfigError as exc:
        return False, str(exc)
    client.connect_timeout = timeout
    answered = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(c: paho.Client, u: Any, flags: Any, reason_code: Any, props: Any) -> None:
        result["connack"] = reason_code
        answered.set()

    def on_disconnect(c: paho.Client, u: Any, flags: Any, reason_code: Any, props: Any) -> None:
        result["closed"] = reason_code
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(host, port, keepalive=mqtt_cfg.keepalive_s)
    except ConnectionRefusedError:
        return False, f"cannot reach broker {where} (connection refused)"
    except socket.gaierror as exc:
        return False, f"cannot resolve broker host {host!r} ({exc.strerror or exc})"
    except TimeoutError:
        return False, f"cannot reach broker {where} (no answer within {timeout:g} s)"
    except ssl.SSLCertVerificationError as exc:
        return False, f"TLS: broker {where} certificate not trusted ({exc.verify_message or exc})"
    except ssl.SSLError as exc:
        return False, f"TLS handshake with {where} failed ({exc.reason or exc})"
    except OSError as exc:
        return False, f"cannot reach broker {where} ({exc.strerror or exc})"
    # Drive the network loop here (no thread, no automatic reconnect) until CONNACK.
    deadline = time.monotonic() + timeout
    try:
        while not answered.is_set() and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                break
        if "connack" not in result:
            what = "closed it" if "closed" in result else f"sent no reply within {timeout:g} s"
            return False, (
                f"{where} accepted TCP but {what} instead of an MQTT CONNACK "
                "(not an MQTT broker port, or one that expects TLS?)"
            )
        reason = result["connack"]
        if reason.is_failure:
            return False, f"broker {where} refused the connection ({reason})"
        secure = ", TLS" if mqtt_cfg.tls.enabled else ""
        return True, f"connected to {where} (MQTT {mqtt_cfg.protocol}{secure})"
    finally:
        client.disconnect()


def forget(mqtt_cfg: MqttConfig, messages_to_send: list[Message], timeout: float = 10.0) -> tuple[bool, str]:
    """Publish `messages_to_send` (whole topics, QoS 1) on one connection and wait for
    every PUBACK: ``edgepose forget`` (uninstall) clears the node's retained topics and
    removes its Home Assistant device. (False, why) when the broker cannot be reached."""
    ok, detail = probe(mqtt_cfg, timeout=timeout)
    if not ok:
        return False, detail
    client = new_client(mqtt_cfg, f"{mqtt_cfg.client_id}-forget" if mqtt_cfg.client_id else "")
    acked: set[int] = set()
    client.on_publish = lambda c, u, mid, rc, props: acked.add(mid)
    client.connect(mqtt_cfg.host, mqtt_cfg.port, keepalive=mqtt_cfg.keepalive_s)
    try:
        mids = [client.publish(m.topic, m.payload, qos=1, retain=m.retain).mid for m in messages_to_send]
        deadline = time.monotonic() + timeout
        while not set(mids) <= acked and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                break
        missing = len(set(mids) - acked)
        if missing:
            return False, f"{missing} of {len(mids)} messages were not acknowledged within {timeout:g} s"
        return True, f"cleared {len(mids)} retained topics on {mqtt_cfg.host}:{mqtt_cfg.port}"
    finally:
        client.disconnect()
