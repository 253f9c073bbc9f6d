"""At-least-once delivery on the training upload path: no fragment trained on, whatever the delivery.

Four training sets land in one group, each file uploaded as a user would (a set's files in any order, a
marker last): three ordinary-named files with no marker (`set/`), a lone file (`lone/`), two files closed
by `_SUCCESS` (`marked/`), and a file uploaded twice (`again/`). Hypothesis interleaves the uploads with the
handling of their `Object Created` events (each delivered 1 to 3 times, early or late), then delivers the
settle messages those events sent (each 1 to 3 times, shuffled), then late duplicates of both. The premise
of the settle delay holds: every file of a set has landed before the first of its settle messages comes back.

Whatever the order, the end state is the same: one job on the lone file, one on the marked set, one on the
newest version of `again/t.csv`; no job on any file of `set/` but a DATASET_NEEDS_MARKER report beside each
and exactly one notice for the folder.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagepilot import wiring
from sagepilot.events import QueuedMessage, parse_object_created, parse_settled
from sagepilot.metrics import MemoryRecorder
from sagepilot.services.training import Training
from sagepilot.settings import load_training_settings
from sagepilot_sandbox.stack.provision import Stack

from .conftest import WITHOUT_SHRINKING, World

TRAINING = "TrainingFunction"
GROUP = "churn"
CSV = b"1,34,12,56.1\n0,51,3,12.0\n"
# (key, body) in the order a user uploads each set; sets interleave freely, a set's marker comes last.
SETS = [
    [("training/churn/set/a.csv", CSV), ("training/churn/set/b.csv", CSV), ("training/churn/set/c.csv", CSV)],
    [("training/churn/lone/train.csv", CSV)],
    [
        ("training/churn/marked/x.csv", CSV),
        ("training/churn/marked/y.csv", CSV),
        ("training/churn/marked/_SUCCESS", b""),
    ],
    [("training/churn/again/t.csv", CSV), ("training/churn/again/t.csv", CSV + b"1,2,3,4\n")],
]


class Run:
    def __init__(self, world: World) -> None:
        self.w = world
        stack: Stack = world.stack
        self.service: Training = wiring.training(
            load_training_settings(stack.functions[TRAINING].environment), world.clients, MemoryRecorder()
        )
        [self.delivery] = [d for d in stack.functions[TRAINING].rule_deliveries if d.rule_name.endswith("Uploaded")]
        self.settle_url = stack.functions[TRAINING].environment["TRAINING_SETTLE_QUEUE_URL"]
        self.events: list[dict[str, Any]] = []  # every upload event S3 sent, in order
        self.settles: list[dict[str, Any]] = []  # every settle message the function sent
        self.newest: dict[str, str] = {}

    def put(self, key: str, body: bytes) -> None:
        self.newest[key] = self.w.data.drop(key, body)
        self.events += self._drain(self.delivery.delivery_queue_url)

    def upload_event(self, event: dict[str, Any]) -> None:
        self.service.on_upload(parse_object_created(event))
        self.settles += self._drain(self.settle_url, delay_passes=False)

    def settle(self, body: dict[str, Any]) -> None:
        self.service.on_settled(parse_settled(QueuedMessage("m", 1, body)))

    def collect_settles(self) -> None:
        self.settles += self._drain(self.settle_url, delay_passes=True)

    def _drain(self, url: str, *, delay_passes: bool = False) -> list[dict[str, Any]]:
        sqs = self.w.clients("sqs")
        if delay_passes:
            from moto.sqs.models import sqs_backends

            for message in sqs_backends["123456789012"]["us-east-1"].queues[url.rsplit("/", 1)[1]]._messages:
                message.delayed_until = 0.0
        out = []
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return out

    def end_state(self) -> dict[str, Any]:
        sm, data = self.w.clients("sagemaker"), self.w.data
        jobs = []
        for summary in sm.list_training_jobs()["TrainingJobSummaries"]:
            job = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            manifest_key = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3]
            tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]}
            jobs.append((tuple(data.json(manifest_key)[1:]), tags["sagepilot:training-data-version"]))
        reports = {k: data.json(k)["code"] for k in data.keys("rejected/")}
        notices = [n["subject"] for n in self.w.notifications.drain()]
        return {"jobs": sorted(jobs), "reports": reports, "notices": notices}


def expected(run: Run) -> dict[str, Any]:
    marked = ("training/churn/marked/x.csv", "training/churn/marked/y.csv")
    return {
        "jobs": sorted(
            [
                (("training/churn/lone/train.csv",), run.newest["training/churn/lone/train.csv"]),
                (marked, run.newest["training/churn/marked/_SUCCESS"]),
                (("training/churn/again/t.csv",), run.newest["training/churn/again/t.csv"]),
            ]
        ),
        "reports": {
            f"rejected/training/churn/set/{n}.json": "DATASET_NEEDS_MARKER" for n in ("a.csv", "b.csv", "c.csv")
        },
        "notices": [
            "TRAINING WAITING: 3 files in training/churn/set/: upload training/churn/set/_SUCCESS to train on all "
            "of them"[:100]
        ],
    }


@settings(
    max_examples=8,
    deadline=None,
    phases=WITHOUT_SHRINKING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_delivery_trains_no_fragment_and_says_so_once(fresh_world: Any, data: st.DataObject) -> None:
    with fresh_world() as w:
        w.clients("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
        run = Run(w)
        # Uploads, each set in its own order, interleaved with the handling of the events sent so far.
        queues = [list(s) for s in SETS]
        handled = 0
        while any(queues):
            pick = data.draw(st.sampled_from([i for i, q in enumerate(queues) if q]), label="set")
            run.put(*queues[pick].pop(0))
            while handled < len(run.events) and data.draw(st.booleans(), label="handle now"):
                run.upload_event(run.events[handled])
                handled += 1
        # Every upload event (1-3 times, any order), then every settle message (1-3 times, any order).
        events = [e for e in run.events for _ in range(data.draw(st.integers(1, 3), label="copies"))]
        for event in data.draw(st.permutations(events), label="events") + run.events[handled:]:
            run.upload_event(event)
        run.collect_settles()
        settles = [s for s in run.settles for _ in range(data.draw(st.integers(1, 3), label="settle copies"))]
        for body in data.draw(st.permutations(settles), label="settles"):
            run.settle(body)
        # Late duplicates of both, after everything was decided.
        for event in data.draw(st.lists(st.sampled_from(run.events), max_size=4), label="late events"):
            run.upload_event(event)
        run.collect_settles()
        for body in run.settles:
            run.settle(body)
        assert run.end_state() == expected(run)
