"""A Django app that enqueues with Google's client directly (examples/direct_tasks.py), the
dj-cloud-task way: an order pushes a receipt, and one handler URL runs every task by name."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from examples.direct_tasks import TaskRegistry

tasks = TaskRegistry(
    handler_url="https://django-worker.example.com/_tasks/",
    queue="projects/my-project/locations/europe-west1/queues/receipts",
)
receipts: list[int] = []  # stands in for the mail server
mail_server_down = False


@tasks.task
def send_receipt(order: int) -> None:
    if mail_server_down:
        raise ConnectionError("the mail server is down")
    receipts.append(order)


@require_POST
def order(request: HttpRequest) -> JsonResponse:
    number = json.loads(request.body)["order"]
    send_receipt.push(order=number)
    return JsonResponse({"order": number}, status=201)


@csrf_exempt  # Cloud Tasks sends no CSRF token; authenticate it by OIDC token instead
@require_POST
def run_task(request: HttpRequest) -> HttpResponse:
    tasks.run(request.body)
    return HttpResponse(status=204)
