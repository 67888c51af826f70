"""edgepose: PoseNet keypoints from a camera node to MQTT."""

__version__ = "0.1.0"
