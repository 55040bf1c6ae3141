"""A local Cloud Tasks and Cloud Scheduler that Google's own clients talk to over gRPC or
REST.

The same engines as the pytest plugin, driven by the real clock and real HTTP:
`python -m fastapi_cloud_tasks.emulator --port 8123`.
"""

from fastapi_cloud_tasks.emulator.server import Emulator

__all__ = ["Emulator"]
