"""The OpenAPI 3.1 document of every operation, made from the request and response models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from openimm.api import responses as rs
from openimm.api.parse import OPERATIONS

RESPONSES: dict[str, type[BaseModel]] = {
    "CreateProject": rs.CreateProjectResponse,
    "CreateDataset": rs.CreateDatasetResponse,
    "IndexFileMeta": rs.IndexFileMetaResponse,
    "BatchIndexFileMeta": rs.BatchIndexFileMetaResponse,
    "DeleteFileMeta": rs.DeleteFileMetaResponse,
    "GetFileMeta": rs.GetFileMetaResponse,
    "UpdateFileMeta": rs.UpdateFileMetaResponse,
    "CreateFigureClusteringTask": rs.CreateTaskResponse,
    "CreateSimilarImageClusteringTask": rs.CreateTaskResponse,
    "CreateFacesSearchingTask": rs.CreateTaskResponse,
    "CreateFigureClustersMergingTask": rs.CreateTaskResponse,
    "GetFigureCluster": rs.GetFigureClusterResponse,
    "BatchGetFigureCluster": rs.BatchGetFigureClusterResponse,
    "QueryFigureClusters": rs.QueryFigureClustersResponse,
    "QuerySimilarImageClusters": rs.QuerySimilarImageClustersResponse,
    "UpdateFigureCluster": rs.UpdateFigureClusterResponse,
    "SearchImageFigureCluster": rs.SearchImageFigureClusterResponse,
    "DetectImageFaces": rs.DetectImageFacesResponse,
    "CompareImageFaces": rs.CompareImageFacesResponse,
    "GetTask": rs.GetTaskResponse,
    "ListTasks": rs.ListTasksResponse,
    "SimpleQuery": rs.SimpleQueryResponse,
    "ListDatasets": rs.ListDatasetsResponse,
}

_ERROR = {
    "type": "object",
    "required": ["RequestId", "Code", "Message"],
    "properties": {
        "RequestId": {"type": "string"},
        "HostId": {"type": "string"},
        "Code": {"type": "string", "examples": ["InvalidArgument", "ResourceNotFound"]},
        "Message": {"type": "string"},
    },
}
_STATUSES = {
    "400": "Invalid or missing parameter, or a bad signature (Code says which)",
    "403": "The access key is not granted a project or bucket the request names",
    "404": "An unknown project, dataset, file, cluster, task or access key",
    "409": "The resource exists already, or a MetaLockVersion is stale",
    "503": "Storage or models are out of reach, or too many image analyses run (Throttling): "
    "try again later",
}


@cache
def openapi_document(version: str) -> dict[str, Any]:
    """The document; `version` is OpenIMM's."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation") for model in OPERATIONS.values()
    ]
    models += [(model, "serialization") for model in set(RESPONSES.values())]
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    paths: dict[str, Any] = {}
    for operation, request in OPERATIONS.items():
        reply = refs[(RESPONSES[operation], "serialization")]
        paths[f"/{operation}"] = {
            "post": {
                "operationId": operation,
                "summary": (request.__doc__ or operation).strip().splitlines()[0],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": refs[(request, "validation")]}
                    },
                },
                "responses": {
                    "200": {
                        "description": "Done; RequestId is added to the reply",
                        "content": {"application/json": {"schema": reply}},
                    },
                    **{
                        status: {
                            "description": text,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Error"}
                                }
                            },
                        }
                        for status, text in _STATUSES.items()
                    },
                },
            }
        }
    schemas = {**defs.get("$defs", {}), "Error": _ERROR}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenIMM",
            "version": version,
            "description": (
                "Alibaba Cloud IMM's face and image clustering operations (API 2020-09-30). "
                "Each operation is also served in IMM's RPC style (POST / with Action), "
                "as Alibaba Cloud's SDKs send it."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
