"""citypatrol.models: detectors, label maps, the model registry and the asset resolver.

Importing this package tells ultralytics it is offline (`YOLO_OFFLINE=1`, unless already set) before
anything imports it: citypatrol never fetches weights, fonts or updates from a hub at run time, and
sends no usage analytics from a city's network.
"""

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
