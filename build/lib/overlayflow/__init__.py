"""overlayflow: VLM gripper paths drawn onto RoboTwin 2.0 demonstrations, for path-conditioned policies."""

__version__ = "0.1.0"
