"""The contract models: what parses, what IMM error each bad input gives, and the wire spelling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

import openimm.api as api
from openimm.api import (
    OPERATIONS,
    BatchGetFigureClusterRequest,
    BatchIndexFileMetaRequest,
    CreateDatasetRequest,
    CreateFacesSearchingTaskRequest,
    CreateFigureClusteringTaskRequest,
    CreateProjectRequest,
    CreateTaskResponse,
    DeleteFileMetaRequest,
    Figure,
    FigureCluster,
    File,
    GetFigureClusterRequest,
    GetFigureClusterResponse,
    GetFileMetaRequest,
    GetTaskRequest,
    GetTaskResponse,
    IndexFileMetaRequest,
    ListTasksRequest,
    ListTasksResponse,
    QueryFigureClustersRequest,
    QueryFigureClustersResponse,
    TaskInfo,
    format_time,
    parse_request,
    parse_time,
)
from openimm.errors import ImmError, InvalidArgument, MissingParameter

DATASET = {"ProjectName": "immtest", "DatasetName": "dataset001"}


def invalid(model: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        parse_request(model, body)
    return caught.value.message


def missing(model: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(MissingParameter) as caught:
        parse_request(model, body)
    return caught.value.message


def assert_clean(message: str) -> None:
    # Nothing of pydantic's internals may reach a client.
    for leak in ("pydantic", "http", "type=", "input_value", "Input should", "function-"):
        assert leak not in message


# ------------------------------------------------------------------ valid requests


def test_every_operation_parses_a_minimal_valid_body() -> None:
    bodies: dict[str, dict[str, Any]] = {
        "CreateProject": {"ProjectName": "immtest"},
        "CreateDataset": DATASET,
        "IndexFileMeta": {**DATASET, "File": {"URI": "oss://bucket/a.jpg"}},
        "BatchIndexFileMeta": {**DATASET, "Files": [{"URI": "oss://bucket/a.jpg"}]},
        "DeleteFileMeta": {**DATASET, "URI": "oss://bucket/a.jpg"},
        "GetFileMeta": {**DATASET, "URI": "oss://bucket/a.jpg"},
        "CreateFigureClusteringTask": DATASET,
        "CreateSimilarImageClusteringTask": DATASET,
        "CreateFacesSearchingTask": {**DATASET, "Sources": [{"URI": "oss://bucket/q.jpg"}]},
        "GetFigureCluster": {**DATASET, "ObjectId": "Cluster-1"},
        "BatchGetFigureCluster": {**DATASET, "ObjectIds": ["Cluster-1"]},
        "QueryFigureClusters": DATASET,
        "QuerySimilarImageClusters": DATASET,
        "GetTask": {"ProjectName": "immtest", "TaskType": "FaceClustering", "TaskId": "t-1"},
        "ListTasks": {"ProjectName": "immtest"},
        "ListDatasets": {"ProjectName": "immtest"},
        "SimpleQuery": {
            **DATASET,
            "Query": {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": "C-1"},
        },
        "UpdateFileMeta": {**DATASET, "File": {"URI": "oss://bucket/a.jpg"}},
        "UpdateFigureCluster": {**DATASET, "FigureCluster": {"ObjectId": "Cluster-1"}},
        "CreateFigureClustersMergingTask": {**DATASET, "From": "Cluster-1", "To": "Cluster-2"},
        "SearchImageFigureCluster": {**DATASET, "SourceURI": "oss://bucket/q.jpg"},
        "DetectImageFaces": {"ProjectName": "immtest", "SourceURI": "oss://bucket/q.jpg"},
        "CompareImageFaces": {
            "ProjectName": "immtest",
            "Source": {"URI1": "oss://bucket/a.jpg", "URI2": "oss://bucket/b.jpg"},
        },
    }
    assert set(bodies) == set(OPERATIONS)
    for name, body in bodies.items():
        assert isinstance(parse_request(OPERATIONS[name], body), OPERATIONS[name])


def test_create_figure_clustering_task_reads_imm_keys() -> None:
    request = parse_request(
        CreateFigureClusteringTaskRequest,
        {
            **DATASET,
            "UserData": '{"ID": "user1"}',
            "Tags": {"test": "val1"},
            "Notification": {"MNS": {"TopicName": "topic1"}, "ExtendedMessageURI": "oss://b/x"},
            "Action": "CreateFigureClusteringTask",  # RPC common parameters are ignored
        },
    )
    assert request.project_name == "immtest"
    assert request.dataset_name == "dataset001"
    assert request.user_data == '{"ID": "user1"}'
    assert request.tags == {"test": "val1"}
    assert request.notification is not None
    assert request.notification.mns is not None
    assert request.notification.mns.topic_name == "topic1"
    assert request.notification.extended_message_uri == "oss://b/x"


def test_json_string_parameters_are_decoded() -> None:
    request = parse_request(
        CreateFigureClusteringTaskRequest,
        {
            **DATASET,
            "Tags": '{"a": "b", "n": 3, "ok": true}',
            "Notification": '{"MNS": {"TopicName": "t"}}',
        },
    )
    assert request.tags == {"a": "b", "n": "3", "ok": "true"}
    assert request.notification is not None and request.notification.mns is not None

    batch = parse_request(
        BatchIndexFileMetaRequest,
        {**DATASET, "Files": json.dumps([{"URI": "oss://b/1.jpg", "CustomLabels": {"k": "v"}}])},
    )
    assert batch.files[0].uri == "oss://b/1.jpg"
    assert batch.files[0].custom_labels == {"k": "v"}

    ids = parse_request(BatchGetFigureClusterRequest, {**DATASET, "ObjectIds": '["Cluster-1"]'})
    assert ids.object_ids == ["Cluster-1"]

    index = parse_request(IndexFileMetaRequest, {**DATASET, "File": '{"URI": "oss://b/1.jpg"}'})
    assert index.file.uri == "oss://b/1.jpg"

    tasks = parse_request(
        ListTasksRequest,
        {"ProjectName": "p", "TaskTypes": '["FaceClustering"]', "MaxResults": "10"},
    )
    assert tasks.task_types == ["FaceClustering"]
    assert tasks.max_results == 10


def test_nulls_count_as_absent() -> None:
    request = parse_request(CreateDatasetRequest, {**DATASET, "Description": None})
    assert request.description is None
    assert "ProjectName" in missing(CreateDatasetRequest, {**DATASET, "ProjectName": None})


def test_query_figure_clusters_defaults_and_normalisation() -> None:
    plain = parse_request(QueryFigureClustersRequest, DATASET)
    assert (plain.max_results, plain.sort, plain.order, plain.with_total_count) == (
        100,
        None,
        "asc",
        False,
    )
    # IMM documents MaxResults 0 as "the default".
    zero = parse_request(QueryFigureClustersRequest, {**DATASET, "MaxResults": 0})
    assert zero.max_results == 100
    upper = parse_request(
        QueryFigureClustersRequest,
        {
            **DATASET,
            "Order": "DESC",
            "Sort": "ImageCount",
            "WithTotalCount": "true",
            "CreateTimeRange": '{"Start": "2022-01-14T10:10:52.83948013+08:00"}',
        },
    )
    assert (upper.order, upper.sort, upper.with_total_count) == ("desc", "ImageCount", True)
    assert upper.create_time_range is not None
    assert upper.create_time_range.start == "2022-01-14T10:10:52.83948013+08:00"


def test_faces_searching_max_result_default() -> None:
    body = {**DATASET, "Sources": [{"URI": "oss://b/q.jpg"}]}
    assert parse_request(CreateFacesSearchingTaskRequest, body).max_result == 5
    assert (
        parse_request(CreateFacesSearchingTaskRequest, {**body, "MaxResult": "0"}).max_result == 5
    )
    assert (
        parse_request(CreateFacesSearchingTaskRequest, {**body, "MaxResult": 100}).max_result == 100
    )
    assert "MaxResult" in invalid(CreateFacesSearchingTaskRequest, {**body, "MaxResult": 101})


def test_requests_are_immutable() -> None:
    request = parse_request(CreateProjectRequest, {"ProjectName": "p"})
    with pytest.raises(ValueError, match="frozen"):
        request.project_name = "q"


# ------------------------------------------------------------------ bad requests


def test_missing_project_name() -> None:
    message = missing(CreateFigureClusteringTaskRequest, {"DatasetName": "d"})
    assert message == "The parameter ProjectName is required."


def test_missing_nested_parameter_uses_imm_flattened_name() -> None:
    body = {**DATASET, "Files": [{"URI": "oss://b/1.jpg"}, {"CustomId": "x"}]}
    assert missing(BatchIndexFileMetaRequest, body) == "The parameter Files.2.URI is required."
    notification = {**DATASET, "Notification": {"MNS": {}}}
    assert "Notification.MNS.TopicName" in missing(CreateFigureClusteringTaskRequest, notification)


def test_missing_wins_over_invalid() -> None:
    message = missing(QueryFigureClustersRequest, {"ProjectName": "p", "MaxResults": 500})
    assert message == "The parameter DatasetName is required."


def test_user_data_limit_counts_utf8_bytes() -> None:
    # "é" is two bytes: 1024 of them are exactly 2048 bytes.
    ok = parse_request(CreateFigureClusteringTaskRequest, {**DATASET, "UserData": "é" * 1024})
    assert ok.user_data == "é" * 1024
    message = invalid(CreateFigureClusteringTaskRequest, {**DATASET, "UserData": "é" * 1024 + "x"})
    assert message == "The parameter UserData must be at most 2048 bytes in UTF-8."
    ascii_ok = {**DATASET, "UserData": "x" * 2048}
    assert parse_request(CreateFigureClusteringTaskRequest, ascii_ok).user_data == "x" * 2048


@pytest.mark.parametrize(
    ("model", "body", "parameter", "reason"),
    [
        (CreateProjectRequest, {"ProjectName": 5}, "ProjectName", "must be a string"),
        (BatchIndexFileMetaRequest, {**DATASET, "Files": "x"}, "Files", "must be a list"),
        (CreateFigureClusteringTaskRequest, {**DATASET, "Tags": "x"}, "Tags", "must be an object"),
        (
            CreateFigureClusteringTaskRequest,
            {**DATASET, "Tags": {"a": {"b": 1}}},
            "Tags.a",
            "string",
        ),
        (
            CreateFigureClusteringTaskRequest,
            {**DATASET, "Notification": 7},
            "Notification",
            "object",
        ),
        (
            GetTaskRequest,
            {"ProjectName": "p", "TaskType": "T", "TaskId": "t", "RequestDefinition": "maybe"},
            "RequestDefinition",
            "boolean",
        ),
        (QueryFigureClustersRequest, {**DATASET, "MaxResults": "ten"}, "MaxResults", "integer"),
        (QueryFigureClustersRequest, {**DATASET, "MaxResults": 2.5}, "MaxResults", "integer"),
    ],
)
def test_wrong_types(
    model: type[BaseModel], body: dict[str, Any], parameter: str, reason: str
) -> None:
    message = invalid(model, body)
    assert message.startswith(f"The parameter {parameter} ")
    assert reason in message
    assert_clean(message)


def test_batch_index_file_meta_needs_1_to_100_files() -> None:
    one = [{"URI": "oss://bucket/a.jpg"}]
    assert (
        len(parse_request(BatchIndexFileMetaRequest, {**DATASET, "Files": one * 100}).files) == 100
    )
    assert invalid(BatchIndexFileMetaRequest, {**DATASET, "Files": []}) == (
        "The parameter Files must have at least 1 item."
    )
    assert invalid(BatchIndexFileMetaRequest, {**DATASET, "Files": one * 101}) == (
        "The parameter Files must have at most 100 items."
    )


def test_batch_get_figure_cluster_needs_1_to_100_ids() -> None:
    assert "at least 1" in invalid(BatchGetFigureClusterRequest, {**DATASET, "ObjectIds": []})
    many = [f"Cluster-{i}" for i in range(101)]
    assert "at most 100" in invalid(BatchGetFigureClusterRequest, {**DATASET, "ObjectIds": many})
    assert invalid(BatchGetFigureClusterRequest, {**DATASET, "ObjectIds": ["a", ""]}) == (
        "The parameter ObjectIds.2 must not be empty."
    )


def test_max_results_bounds() -> None:
    assert invalid(QueryFigureClustersRequest, {**DATASET, "MaxResults": 101}) == (
        "The parameter MaxResults must be at most 100."
    )
    assert invalid(QueryFigureClustersRequest, {**DATASET, "MaxResults": -1}) == (
        "The parameter MaxResults must be at least 0."
    )
    # ListTasks documents (0, 100]: 0 is refused there.
    assert invalid(ListTasksRequest, {"ProjectName": "p", "MaxResults": 0}) == (
        "The parameter MaxResults must be at least 1."
    )
    assert "at most 100" in invalid(ListTasksRequest, {"ProjectName": "p", "MaxResults": 101})
    # lax parsing would read true as 1 and false as 0
    for boolean in (True, False):
        assert invalid(QueryFigureClustersRequest, {**DATASET, "MaxResults": boolean}) == (
            "The parameter MaxResults must be an integer."
        )


def test_bad_sort_and_order() -> None:
    sort = invalid(QueryFigureClustersRequest, {**DATASET, "Sort": "Size"})
    assert sort.startswith("The parameter Sort must be 'ImageCount', ")
    assert "'FaceCount'" in sort
    assert invalid(QueryFigureClustersRequest, {**DATASET, "Order": "up"}) == (
        "The parameter Order must be 'asc' or 'desc'."
    )
    assert "'TaskId'" in invalid(ListTasksRequest, {"ProjectName": "p", "Sort": "ImageCount"})
    assert "'Running'" in invalid(ListTasksRequest, {"ProjectName": "p", "Status": "Done"})


@pytest.mark.parametrize(
    "name", ["9lives", "-dash", "has space", "dot.name", "中文", "", "a" * 129, "name\n"]
)
def test_bad_names(name: str) -> None:
    message = invalid(CreateDatasetRequest, {"ProjectName": "p", "DatasetName": name})
    assert message.startswith("The parameter DatasetName must be 1 to 128 characters")


@pytest.mark.parametrize("name", ["a", "_x", "Test-Project_01", "a" * 128])
def test_good_names(name: str) -> None:
    assert parse_request(CreateProjectRequest, {"ProjectName": name}).project_name == name


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/a.jpg",
        "oss://bucket",
        "oss://bucket/",
        "oss://Bucket/a.jpg",
        "/photos/a.jpg",
        "oss:///a.jpg",
        "oss://bucket//a.jpg",
    ],
)
def test_uri_must_be_oss(uri: str) -> None:
    message = invalid(DeleteFileMetaRequest, {**DATASET, "URI": uri})
    assert message == "The parameter URI must be an OSS URI of the form oss://bucket/object."
    source = {**DATASET, "Sources": [{"URI": uri}]}
    assert "Sources.1.URI" in invalid(CreateFacesSearchingTaskRequest, source)


def test_good_uris() -> None:
    for uri in ("oss://bucket/a.jpg", "oss://my-bucket/dir/sub/photo 1.JPG", "oss://b/中文.png"):
        assert parse_request(GetFileMetaRequest, {**DATASET, "URI": uri}).uri == uri


def test_bad_time_ranges() -> None:
    message = invalid(
        QueryFigureClustersRequest, {**DATASET, "CreateTimeRange": {"Start": "today"}}
    )
    assert message.startswith("The parameter CreateTimeRange.Start must be an RFC 3339 time")
    reversed_range = {"Start": "2023-01-01T00:00:00Z", "End": "2022-01-01T00:00:00Z"}
    message = invalid(QueryFigureClustersRequest, {**DATASET, "UpdateTimeRange": reversed_range})
    assert message == "The parameter UpdateTimeRange must have Start no later than End."


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidArgument):
        parse_request(CreateProjectRequest, ["ProjectName"])  # type: ignore[arg-type]


def test_errors_are_imm_errors_with_400() -> None:
    with pytest.raises(ImmError) as caught:
        parse_request(CreateProjectRequest, {})
    assert (caught.value.code, caught.value.http_status) == ("MissingParameter", 400)


# ------------------------------------------------------------------ times


def test_format_time_is_rfc3339_utc_with_microseconds() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000000+00:00"
    assert format_time(1642126252.5) == "2022-01-14T02:10:52.500000+00:00"


def test_parse_time_reads_imm_and_our_own_spelling() -> None:
    assert parse_time("2022-01-14T10:10:52.83948013+08:00") == pytest.approx(1642126252.83948013)
    assert parse_time("2022-01-14T02:10:52Z") == 1642126252.0
    assert parse_time(format_time(1642126252.25)) == 1642126252.25
    for bad in ("2022-01-14", "2022-01-14T02:10:52", "yesterday", "2022-13-01T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_time(bad)


# ------------------------------------------------------------------ responses

# The example response of GetFigureCluster in ../shared/seeds/GetFigureCluster.txt, cut to
# the fields OpenIMM fills, plus some it does not (they must be dropped, not renamed).
SEED_FIGURE = {
    "FigureId": "868a9e74-cde5-4c7a-9013-28bb984****",
    "FigureConfidence": 1,
    "FigureClusterId": "Cluster-dbe72fec-b84c-4ab6-885b-3678e64****",
    "FigureClusterConfidence": 1,
    "FigureType": "face",
    "Age": 29,
    "AgeSD": 5,
    "Gender": "female",
    "GenderConfidence": 1,
    "Emotion": "happiness",
    "EmotionConfidence": 0.70784568786621,
    "FaceQuality": 0.960875928401947,
    "Boundary": {"Width": 200, "Height": 300, "Left": 10, "Top": 30},
    "Mouth": "close",
    "MouthConfidence": 1,
    "Beard": "none",
    "BeardConfidence": 1,
    "Hat": "none",
    "HatConfidence": 1,
    "Mask": "none",
    "MaskConfidence": 1,
    "Glasses": "none",
    "GlassesConfidence": 0.8,
    "Sharpness": 0.7,
    "Attractive": 0.96,
    "HeadPose": {"Pitch": 18.385589599609375, "Roll": 4.204030513763428, "Yaw": 2.4945924282073975},
}
SEED_FILE = {
    "OwnerId": "102321002467****",
    "ProjectName": "test-project",
    "DatasetName": "test-dataset",
    "ObjectType": "file",
    "ObjectId": "75d5de2c50754e3dadd5c35dbca5f9949369e37eb342a73821f690c94c36c7f7",
    "UpdateTime": "2021-06-29T14:50:13.011643661+08:00",
    "CreateTime": "2021-06-29T14:50:13.011643661+08:00",
    "URI": "oss://examplebucket/sampleobject.jpg",
    "OSSURI": "oss://examplebucket/sampleobject.jpg",
    "Filename": "sampleobject.jpg",
    "MediaType": "image",
    "ContentType": "image/jpeg",
    "Size": 1000,
    "FileHash": "1d9c280a7c4f67f7ef873e28449dbe17",
    "FileModifiedTime": "2021-06-29T14:50:13.011643661+08:00",
    "ProduceTime": "2021-06-29T14:50:13.011643661+08:00",
    "Orientation": 0,
    "Figures": [SEED_FIGURE],
    "FigureCount": 10,
    "Title": "test",
    "ImageWidth": 270,
    "ImageHeight": 500,
    "EXIF": '{"Compression":{"value":"6"},"DateTime":{"value":"2020:08:19 17:11:11"}}',
    "ETag": '"1D9C280A7C4F67F7EF873E28449****"',
    "CustomId": "\t\nmember-image-id-0001",
    "CustomLabels": {"MemberName": "Tim", "Enabled": "True", "ItemCount": "10"},
    "Reason": "[InternalError] The request has been failed due to some unknown error.",
    "ObjectStatus": "Indexed",
}
SEED_UNSUPPORTED = {"LatLong": "30.134390,120.074997", "OSSCRC64": "559890638950338001"}
SEED_FIGURE_CLUSTER = {
    "OwnerId": "102321002****",
    "ProjectName": "immtest",
    "DatasetName": "dataset001",
    "ObjectType": "figure-cluster",
    "ObjectId": "Cluster-ae6e3472-999e-410b-b54e-cd5dba****",
    "UpdateTime": "2022-01-14T10:10:52.83948013+08:00",
    "CreateTime": "2022-01-14T10:10:52.83948013+08:00",
    "Name": "abc",
    "Gender": "female",
    "FaceCount": 3,
    "ImageCount": 5,
    "VideoCount": 3,
    "AverageAge": 26,
    "MinAge": 12,
    "MaxAge": 44,
    "Cover": SEED_FILE,
    "BaseImages": [SEED_FILE],
    "CustomId": "abc",
    "CustomLabels": {"Bucket": "examplebucket"},
    "MetaLockVersion": 0,
}


def test_figure_cluster_round_trips_the_seed_example_with_imm_spelling() -> None:
    with_extras = {
        **SEED_FIGURE_CLUSTER,
        "Cover": {**SEED_FILE, **SEED_UNSUPPORTED},
        "BaseImages": [{**SEED_FILE, **SEED_UNSUPPORTED}],
    }
    dumped = FigureCluster.model_validate(with_extras).dump()
    assert dumped == SEED_FIGURE_CLUSTER


def test_fully_filled_models_use_only_seed_keys() -> None:
    # Filling every field and dumping must give exactly the seed's keys: no field is
    # misspelt (Uri, OssUri, AgeSd, Etag, Exif...) and none is missing from the seed.
    cluster = FigureCluster.model_validate(SEED_FIGURE_CLUSTER)
    assert set(cluster.dump()) == set(SEED_FIGURE_CLUSTER)
    aliases = {field.alias for field in FigureCluster.model_fields.values()}
    assert aliases == set(SEED_FIGURE_CLUSTER)
    # IMM's File struct also documents ImageScore {OverallQualityScore}; the seed's example
    # file leaves it out
    file_keys = {field.alias for field in File.model_fields.values()}
    assert file_keys == {*SEED_FILE, "ImageScore"}
    # FigureClusterReason is OpenIMM's own: why a face in no cluster is left out
    figure_keys = {field.alias for field in Figure.model_fields.values()}
    assert figure_keys == {*SEED_FIGURE, "FigureClusterReason"}


def test_responses_built_from_python_names_and_epoch_times() -> None:
    # Rows keep epoch seconds; validating a row formats them.
    cluster = FigureCluster.model_validate(
        {
            "object_id": "Cluster-1",
            "CreateTime": 1642126252.5,
            "UpdateTime": 1642126252.5,
            "FaceCount": 3,
            "_private": "dropped",
            "cover": File(uri="oss://b/k.jpg", figures=[Figure(figure_id="f-1", age_sd=2.5)]),
        }
    )
    body = GetFigureClusterResponse(figure_cluster=cluster).dump()
    assert body == {
        "FigureCluster": {
            "ObjectType": "figure-cluster",
            "ObjectId": "Cluster-1",
            "CreateTime": "2022-01-14T02:10:52.500000+00:00",
            "UpdateTime": "2022-01-14T02:10:52.500000+00:00",
            "FaceCount": 3,
            "Cover": {
                "ObjectType": "file",
                "URI": "oss://b/k.jpg",
                "Figures": [{"FigureId": "f-1", "FigureType": "face", "AgeSD": 2.5}],
            },
        }
    }


def test_task_and_list_bodies() -> None:
    assert CreateTaskResponse(task_id="t-1", event_id="e-1").dump() == {
        "TaskId": "t-1",
        "EventId": "e-1",
    }
    info = TaskInfo(
        task_id="t-1",
        task_type="FaceClustering",
        status="Running",
        start_time=format_time(0),
        progress=45,
        tags={"a": "b"},
    )
    assert info.dump() == {
        "TaskId": "t-1",
        "TaskType": "FaceClustering",
        "Status": "Running",
        "StartTime": "1970-01-01T00:00:00.000000+00:00",
        "Progress": 45,
        "Tags": {"a": "b"},
    }
    got = GetTaskResponse(project_name="p", **info.model_dump()).dump()
    assert got["ProjectName"] == "p" and got["TaskId"] == "t-1"
    listed = ListTasksResponse.model_validate(
        {"ProjectName": "p", "MaxResults": 1, "Tasks": [info]}
    ).dump()
    assert listed["MaxResults"] == "1"
    assert listed["Tasks"][0]["TaskId"] == "t-1"
    query = QueryFigureClustersResponse(figure_clusters=[], next_token="", total_count=0).dump()
    assert query == {"FigureClusters": [], "NextToken": "", "TotalCount": 0}


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({**DATASET, "File": {"URI": "oss://b/x.jpg", "CustomId": "\ud800"}}, "File.CustomId"),
        ({**DATASET, "File": {"URI": "oss://b/x.jpg", "CustomLabels": {"\udc00": "v"}}}, None),
        ({**DATASET, "File": {"URI": "oss://b/\ud800.jpg"}}, "File.URI"),
        ({**DATASET, "File": '{"URI": "oss://b/\\ud800.jpg"}'}, "File"),
        ({**DATASET, "File": {"URI": "oss://b/x.jpg"}, "\ud800": 1}, None),
    ],
)
def test_lone_surrogates_are_refused_naming_the_parameter(
    body: dict[str, Any], parameter: str | None
) -> None:
    message = invalid(IndexFileMetaRequest, body)
    assert "is not valid Unicode text: it holds a lone surrogate" in message
    if parameter:
        assert message.startswith(f"The parameter {parameter} ")
    message.encode("utf-8")  # the reply can carry it


def test_ids_are_short_printable_ascii() -> None:
    assert parse_request(GetFigureClusterRequest, {**DATASET, "ObjectId": "C" * 128})
    for bad in ("C" * 129, "Cluster 1", "Cluster-\u00e9", "a\x00b"):
        message = invalid(GetFigureClusterRequest, {**DATASET, "ObjectId": bad})
        assert message == (
            "The parameter ObjectId must be 1 to 128 printable ASCII characters without spaces."
        )
    message = invalid(GetTaskRequest, {"ProjectName": "p", "TaskType": "T", "TaskId": "t" * 200})
    assert message.startswith("The parameter TaskId must be 1 to 128")


def test_uris_fit_a_table_key() -> None:
    uri = "oss://bucket/" + "\u00e9" * 505 + "x"  # 1024 bytes in UTF-8
    assert parse_request(GetFileMetaRequest, {**DATASET, "URI": uri})
    message = invalid(GetFileMetaRequest, {**DATASET, "URI": uri + "x"})
    assert message == "The parameter URI must be at most 1024 bytes in UTF-8."


def test_labels_and_text_are_bounded() -> None:
    def index(**fields: Any) -> str:
        return invalid(IndexFileMetaRequest, {**DATASET, "File": {"URI": "oss://b/x", **fields}})

    many = {str(i): "v" for i in range(101)}
    assert (
        index(CustomLabels=many) == "The parameter File.CustomLabels must have at most 100 entries."
    )
    assert "keys of at most 128 bytes" in index(CustomLabels={"k" * 129: "v"})
    assert "values of at most 1024 bytes" in index(CustomLabels={"k": "v" * 1025})
    assert (
        index(Title="t" * 1025) == "The parameter File.Title must be at most 1024 bytes in UTF-8."
    )
    tags = {**DATASET, "Tags": json.dumps(many)}
    assert "at most 100 entries" in invalid(CreateFigureClusteringTaskRequest, tags)


def test_json_text_too_deep_is_a_type_error() -> None:
    message = invalid(IndexFileMetaRequest, {**DATASET, "File": "[" * 100_000})
    assert message == "The parameter File must be an object (a JSON object)."


def test_topic_names_are_what_the_topic_publishes_to() -> None:
    good = {**DATASET, "Notification": {"MNS": {"TopicName": "imm-tasks"}}}
    assert parse_request(CreateFigureClusteringTaskRequest, good)
    bad = {**DATASET, "Notification": {"MNS": {"TopicName": "no spaces"}}}
    message = invalid(CreateFigureClusteringTaskRequest, bad)
    assert message.startswith("The parameter Notification.MNS.TopicName must be 1 to 64 letters")


def test_a_search_task_fits_one_queue_message() -> None:
    uri = "oss://bucket/" + "\u7167" * 300  # 6 bytes each once JSON escapes it
    fits = {**DATASET, "Sources": [{"URI": uri}] * 10}
    assert parse_request(CreateFacesSearchingTaskRequest, fits)
    message = invalid(CreateFacesSearchingTaskRequest, {**fits, "Sources": [{"URI": uri}] * 100})
    assert message.startswith("The parameter Sources must have URIs of at most 32768 bytes")


def test_public_surface() -> None:
    for name in api.__all__:
        assert hasattr(api, name), name
    assert GetFigureClusterRequest in OPERATIONS.values()
