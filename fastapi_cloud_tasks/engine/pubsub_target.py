"""Cloud Scheduler jobs with a Pub/Sub target: their checks, and the publish a run makes.

A run of such a job is no HTTP request to a worker but one Pub/Sub publish. Drivers tell it
from an HTTP attempt by its type (`JobPublish`, a `JobDispatch` whose method, URL and body are
the Pub/Sub REST call Google makes: `POST .../v1/{topic}:publish`) and report `finish(publish,
200)` once it is published, `finish(publish, None)` when it could not be. A failed publish is
retried like a failed HTTP attempt, per the job's RetryConfig: Cloud Scheduler retries any job
"that does not complete successfully" (RetryConfig docs); for Pub/Sub that means a publish
that did not succeed. The job's `status` and `last_attempt_time` are set as for HTTP runs.
"""

from __future__ import annotations

import base64
import json
import re

from google.api_core import exceptions

__all__ = ["PUBLISH_URL", "check_pubsub_target", "publish_request"]

# PubsubTarget.topic_name: "in the same format as required by Pub/Sub's PublishRequest.name,
# for example projects/PROJECT_ID/topics/TOPIC_ID"; Pub/Sub's resource names: a topic id
# starts with a letter, is 3..255 letters, digits, - _ . ~ + %, and not "goog..."
TOPIC = re.compile(r"^projects/([^/]+)/topics/([A-Za-z][A-Za-z0-9_.~+%-]{2,254})$")
# Pub/Sub quotas, "Resource limits": a message (data and attributes) at most 10 MB; at most
# 100 attributes; an attribute key at most 256 bytes, a value at most 1024 bytes; keys must
# not start with "goog".
MAX_MESSAGE_BYTES = 10_000_000
MAX_ATTRIBUTES = 100
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024
PUBLISH_URL = "https://pubsub.googleapis.com/v1/{topic}:publish"


def check_pubsub_target(job_name: str, topic_name: str, data: bytes,
                        attributes: dict[str, str]) -> None:
    """Refuse a PubsubTarget Google would refuse, with InvalidArgument naming the value."""
    match = TOPIC.match(topic_name)
    if match is None or match.group(2).lower().startswith("goog"):
        raise exceptions.InvalidArgument(
            f"PubsubTarget.topic_name {topic_name!r} must be projects/PROJECT_ID/topics/"
            "TOPIC_ID, the id 3 to 255 letters, digits, '-', '_', '.', '~', '+' or '%', "
            "starting with a letter and not with 'goog'."
        )
    # "The topic must be in the same project as the Cloud Scheduler job."
    project = job_name.split("/")[1]
    if match.group(1) != project:
        raise exceptions.InvalidArgument(
            f"PubsubTarget.topic_name {topic_name!r} is not in the job's project {project!r}: "
            "the topic must be in the same project as the Cloud Scheduler job."
        )
    if not data and not attributes:
        raise exceptions.InvalidArgument(
            "PubsubTarget must contain either non-empty data, or at least one attribute: "
            "set data or attributes."
        )
    if len(attributes) > MAX_ATTRIBUTES:
        raise exceptions.InvalidArgument(
            f"PubsubTarget.attributes has {len(attributes)} attributes; a Pub/Sub message "
            f"takes at most {MAX_ATTRIBUTES}."
        )
    size = len(data)
    for key, value in attributes.items():
        key_bytes, value_bytes = len(key.encode()), len(value.encode())
        size += key_bytes + value_bytes
        if not key or key_bytes > MAX_KEY_BYTES or key.lower().startswith("goog"):
            raise exceptions.InvalidArgument(
                f"PubsubTarget.attributes key {key!r} must be 1 to {MAX_KEY_BYTES} bytes and "
                "must not start with 'goog'."
            )
        if value_bytes > MAX_VALUE_BYTES:
            raise exceptions.InvalidArgument(
                f"PubsubTarget.attributes[{key!r}] is {value_bytes} bytes; a value takes at "
                f"most {MAX_VALUE_BYTES}."
            )
    if size > MAX_MESSAGE_BYTES:
        raise exceptions.InvalidArgument(
            f"PubsubTarget's message is {size} bytes (data and attributes); a Pub/Sub message "
            f"takes at most {MAX_MESSAGE_BYTES}."
        )


def publish_request(topic_name: str, data: bytes, attributes: dict[str, str]) -> bytes:
    """The JSON body of Pub/Sub's REST `topics.publish` for this one message."""
    message: dict[str, object] = {"data": base64.b64encode(data).decode()}
    if attributes:
        message["attributes"] = attributes
    return json.dumps({"messages": [message]}).encode()

