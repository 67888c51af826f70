"""edgepose: PoseNet keypoints from a camera node to MQTT."""

__version__ = "0.1.0"

#: The project's public page, shown by Home Assistant as the discovery origin's
#: support link; None until the project has one (then nothing is announced).
SUPPORT_URL: str | None = None
