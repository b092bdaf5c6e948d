"""The Function Compute deployment end to end: s.yaml's functions as FC runs them.

Each function gets the environment s.yaml gives it (OPENIMM_BACKEND=aliyun), so the real
Tablestore, OSS and MNS SDK clients are built; their network calls are answered by the
in-memory models of those services (tests/aliyun_models), attached where the SDKs send.
The official IMM SDK calls the api function through an HTTP trigger on a real socket
(access keys on); an OSS trigger event announces each upload; each stage queue feeds its
function as s.yaml's EventBridge MNS triggers do (one message an invocation, retried,
then dead-lettered), and the dead-letter queues feed the dead-letter function.

Faults: a poison photo whose reading kills the instance on every try, one whose reading
raises on every try (its error is the file's reason), and a message delivered twice.
The task succeeds with the poisons failed, nothing doubled, and one notification on the
MNS topic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_imm20200930.client import Client

from aliyun_models.mns_service import MnsService
from aliyun_models.oss_service import OssService
from aliyun_models.tablestore_service import TablestoreService
from fc_deployment import ACCOUNT, SAMPLE_ENV, deployed_functions, mns_triggers
from fc_emulator import HttpTrigger, MnsTrigger, oss_object_created, run_triggers
from function_code import load_handler
from function_faults import InstanceCrash
from imm_story import (
    CRASHING,
    RAISING,
    check_notification,
    check_outcome,
    check_people,
    has_ended,
    open_dataset,
    photo_files,
    sdk,
    start_clustering,
)

pytestmark = pytest.mark.models

REGION = "cn-hangzhou"
STAGES = ("detect", "embed", "cluster", "search")
KEY_ID, SECRET = "LTAI-e2e", "e2e-secret"
PHOTOS, WORK = SAMPLE_ENV["OPENIMM_PHOTO_BUCKET"], SAMPLE_ENV["OPENIMM_WORK_BUCKET"]
TOPIC = "openimm-tasks"
# EventBridge's retries before the dead letters: BACKOFF_RETRY is 3 (10-20 s apart in
# the cloud, at once here); the dead-letter function's day of EXPONENTIAL_DECAY_RETRY is
# cut to a few tries
RETRIES = {"BACKOFF_RETRY": 3, "EXPONENTIAL_DECAY_RETRY": 5}


@dataclass
class Deployment:
    """What the story left behind, for the tests to look at."""

    sdk: Client
    mns: MnsService
    project: str = "album"
    dataset: str = "family"
    task_id: str = ""
    seconds: float = 0.0
    triggers: dict[str, MnsTrigger] = field(default_factory=dict)


def _attach_models(
    patch: pytest.MonkeyPatch, mns_service: MnsService, oss_service: OssService
) -> None:
    """Every client the stores build answers from the service models."""
    import mns.account
    import oss2
    import tablestore as ots

    from openimm.adapters.aliyun.tablestore_table import TablestoreTableStore

    table = SAMPLE_ENV.get("OPENIMM_TABLESTORE_TABLE", "openimm_items")
    names = list(TablestoreTableStore.primary_key_names)
    built_ots, built_account, session = (
        ots.OTSClient.__init__,
        mns.account.Account.__init__,
        (oss2.Session),
    )

    def ots_client(self: Any, *args: Any, **kwargs: Any) -> None:
        built_ots(self, *args, **kwargs)
        TablestoreService.attach(self, {table: names})

    def mns_account(self: Any, *args: Any, **kwargs: Any) -> None:
        built_account(self, *args, **kwargs)
        mns_service.attach(self)

    patch.setattr(ots.OTSClient, "__init__", ots_client)
    patch.setattr(mns.account.Account, "__init__", mns_account)
    patch.setattr(oss2, "Session", lambda: session(adapter=oss_service))


@pytest.fixture(scope="module")
def deployment(sample_photos: Path, model_dir: Path) -> Iterator[Deployment]:
    import oss2

    import openimm.bootstrap as bootstrap
    from openimm.adapters.aliyun.oss_blobs import OssBlobStore

    functions = deployed_functions()
    env = dict(functions["api"]["environmentVariables"])
    keys = {"AccessKeys": [{"AccessKeyId": KEY_ID, "AccessKeySecret": SECRET}]}
    keys["AccessKeys"][0].update(Projects={"album": "write"}, Buckets={"*": "read"})
    env |= {
        "OPENIMM_ACCESS_KEYS": json.dumps(keys),
        "OPENIMM_MODEL_DIR": str(model_dir),
        "OPENIMM_TRIGGER_PROJECT": "album",
        "OPENIMM_TRIGGER_DATASET": "family",
        # what FC sets in every instance: its region, its name and the role's keys
        "FC_FUNCTION_NAME": "openimm-e2e",
        "FC_REGION": REGION,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.role-key",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "role-secret",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "role-token",
    }
    prefix = env["OPENIMM_MNS_QUEUE_PREFIX"]
    queues = [f"{prefix}{s}{tail}" for s in STAGES for tail in ("", "-dlq")]
    mns_service = MnsService([TOPIC], [*queues, f"{prefix}parked"])
    oss_service = OssService([PHOTOS, WORK])

    def reading(original: Any) -> Any:
        def read(self: Any, uri: str, **options: Any) -> bytes:
            if uri.endswith(CRASHING):
                raise InstanceCrash(f"out of memory reading {uri}")
            if uri.endswith(RAISING):
                raise RuntimeError(f"reading {uri} broke")
            return bytes(original(self, uri, **options))

        return read

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        _attach_models(patch, mns_service, oss_service)
        patch.setattr(OssBlobStore, "read", reading(OssBlobStore.read))
        patch.setattr(bootstrap, "_instance", None)
        api = HttpTrigger(load_handler(functions["api"]["handler"]))
        story = Deployment(sdk(api.port, KEY_ID, SECRET, REGION), mns_service)
        uploads = oss2.Bucket(
            oss2.Auth("user-key", "user-secret"),
            f"https://oss-{REGION}.aliyuncs.com",
            PHOTOS,
            session=oss2.Session(),
        )
        try:
            _tell_the_story(story, functions, uploads, sample_photos)
            yield story
        finally:
            api.stop()


def _tell_the_story(
    story: Deployment, functions: dict[str, Any], uploads: Any, photos: Path
) -> None:
    client = story.sdk
    open_dataset(client, story.project, story.dataset)
    on_upload = load_handler(functions["on-object-created"]["handler"])
    for key, data in photo_files(photos).items():
        etag = uploads.put_object(key, data).etag
        on_upload(oss_object_created(PHOTOS, key, len(data), etag, REGION, ACCOUNT), None)
    story.task_id = start_clustering(client, story.project, story.dataset, TOPIC, "fc-e2e")

    for name, props in functions.items():
        for queue, config in mns_triggers(props).items():
            run = config["runOptions"]
            dead = run.get("deadLetterQueue", {}).get("Arn", "").rsplit("/", 1)[-1] or None
            story.triggers[queue] = MnsTrigger(
                story.mns.queues,
                queue,
                load_handler(props["handler"]),
                dead_letter_queue=dead,
                retries=RETRIES[run["retryStrategy"]["PushRetryStrategy"]],
                function_name=name,
                region=REGION,
                account=ACCOUNT,
            )
    redelivered: list[str] = []

    def once(event: dict[str, Any]) -> bool:
        if redelivered:
            return False
        redelivered.append(event["data"]["messageBody"])
        return True

    story.triggers["openimm-detect"].redeliver = once

    def ended() -> bool:
        return has_ended(client, story.project, story.task_id)

    story.seconds = run_triggers(story.triggers.values(), ended, timeout_s=600)


def test_the_task_succeeds_with_the_poisons_failed(deployment: Deployment) -> None:
    said = check_outcome(
        deployment.sdk,
        deployment.project,
        deployment.dataset,
        PHOTOS,
        deployment.task_id,
        "fc-e2e",
    )
    print(f"\n{said} ({deployment.seconds:.1f} s of polling)")


def test_one_person_one_cluster_nothing_doubled(deployment: Deployment) -> None:
    check_people(deployment.sdk, deployment.project, deployment.dataset, PHOTOS)


def test_the_faults_went_through_the_dead_letters(deployment: Deployment) -> None:
    triggers = deployment.triggers
    detect = triggers["openimm-detect"]
    # each poison's message was tried 1 + 3 times before its event went to the dead
    # letters (its second message, the task's, may come after the file failed)
    tries = 1 + RETRIES["BACKOFF_RETRY"]
    assert detect.crashes in (tries, 2 * tries) and detect.failures in (tries, 2 * tries)
    assert detect.dead_lettered == (detect.crashes + detect.failures) // tries
    assert triggers["openimm-detect-dlq"].invocations == detect.dead_lettered
    assert detect.redelivered == 1
    assert all(t.backlog() == 0 for t in triggers.values())
    for queue, trigger in triggers.items():
        print(
            f"{queue:20} invocations {trigger.invocations:3}  crashes {trigger.crashes:2}  "
            f"failures {trigger.failures:2}  dead-lettered {trigger.dead_lettered}"
        )


def test_one_completion_notification_on_the_topic(deployment: Deployment) -> None:
    (body,) = deployment.mns.topics[TOPIC]
    check_notification(json.loads(body), deployment.task_id, deployment.project, "fc-e2e")
