"""Where the emulator's Pub/Sub target jobs publish: to a Pub/Sub emulator when
`PUBSUB_EMULATOR_HOST` is set (Google's convention, read by `google-cloud-pubsub` itself), else
into a bounded in-memory list (`published`, newest last), each message logged at INFO.

`google-cloud-pubsub` is the optional `[pubsub]` extra, imported on the first publish: without
it, and with the variable set, one warning says what to install and messages are kept here.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi_cloud_tasks.engine.cloud_scheduler import JobPublish

__all__ = ["KEPT_MESSAGES", "PubsubPublisher", "PublishedMessage"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")
KEPT_MESSAGES = 1000  # the newest messages kept in memory; older ones are dropped
ENV = "PUBSUB_EMULATOR_HOST"


@dataclass(frozen=True)
class PublishedMessage:
    job_name: str
    schedule_time: datetime
    publish_time: datetime
    topic_name: str
    data: bytes
    attributes: dict[str, str]
    message_id: str | None  # the Pub/Sub emulator's id; None when kept here only


class PubsubPublisher:
    def __init__(self, environ: Any = os.environ, kept: int = KEPT_MESSAGES) -> None:
        self._host: str | None = environ.get(ENV) or None
        self.published: deque[PublishedMessage] = deque(maxlen=kept)
        self._client: Any = None
        self._missing = False

    async def publish(self, publish: JobPublish) -> bool:
        """Publish `publish`'s message; False if the Pub/Sub emulator refused it or did not
        answer (the job's run then failed and is retried per its RetryConfig)."""
        client = self._pubsub_client()
        message_id: str | None = None
        if client is not None:
            try:
                future = client.publish(publish.topic_name, publish.data, **publish.attributes)
                # The client's future blocks: wait in a thread, bounded.
                message_id = str(await asyncio.to_thread(
                    future.result, timeout=publish.deadline.total_seconds()))
            except Exception as exc:
                logger.info("job %s: publishing to %s at %s failed: %r", publish.record.name,
                            publish.topic_name, self._host, exc)
                return False
        self.published.append(PublishedMessage(
            publish.record.name, publish.schedule_time, publish.dispatch_time,
            publish.topic_name, publish.data, dict(publish.attributes), message_id))
        where = f"published to {self._host} as {message_id}" if message_id else "kept"
        logger.info("job %s: message for %s %s (%d bytes, attributes %s)", publish.record.name,
                    publish.topic_name, where, len(publish.data), sorted(publish.attributes))
        return True

    def _pubsub_client(self) -> Any:
        if self._host is None or self._missing:
            return None
        if self._client is None:
            try:
                from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]
            except ImportError:
                self._missing = True
                logger.warning(
                    "%s=%s is set but google-cloud-pubsub is not installed: Pub/Sub target "
                    "jobs' messages are kept in the emulator and logged instead. Install it "
                    "with: pip install 'fastapi-cloud-tasks[pubsub]'", ENV, self._host)
                return None
            self._client = pubsub_v1.PublisherClient()  # it reads PUBSUB_EMULATOR_HOST
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
