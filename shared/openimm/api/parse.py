"""Turn a decoded request body into its model, or into IMM's MissingParameter / InvalidArgument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from openimm.api.base import CUSTOM_ERROR, NOT_UNICODE, lone_surrogate_at
from openimm.api.requests import (
    BatchGetFigureClusterRequest,
    BatchIndexFileMetaRequest,
    CompareImageFacesRequest,
    CreateDatasetRequest,
    CreateFacesSearchingTaskRequest,
    CreateFigureClusteringTaskRequest,
    CreateFigureClustersMergingTaskRequest,
    CreateProjectRequest,
    CreateSimilarImageClusteringTaskRequest,
    DeleteFileMetaRequest,
    DetectImageFacesRequest,
    GetFigureClusterRequest,
    GetFileMetaRequest,
    GetTaskRequest,
    IndexFileMetaRequest,
    ListDatasetsRequest,
    ListTasksRequest,
    QueryFigureClustersRequest,
    QuerySimilarImageClustersRequest,
    SearchImageFigureClusterRequest,
    SimpleQueryRequest,
    UpdateFigureClusterRequest,
    UpdateFileMetaRequest,
)
from openimm.errors import InvalidArgument, MissingParameter

__all__ = ["OPERATIONS", "parse_request"]

M = TypeVar("M", bound=BaseModel)

OPERATIONS: dict[str, type[BaseModel]] = {
    "CreateProject": CreateProjectRequest,
    "CreateDataset": CreateDatasetRequest,
    "IndexFileMeta": IndexFileMetaRequest,
    "BatchIndexFileMeta": BatchIndexFileMetaRequest,
    "DeleteFileMeta": DeleteFileMetaRequest,
    "GetFileMeta": GetFileMetaRequest,
    "UpdateFileMeta": UpdateFileMetaRequest,
    "CreateFigureClusteringTask": CreateFigureClusteringTaskRequest,
    "CreateSimilarImageClusteringTask": CreateSimilarImageClusteringTaskRequest,
    "CreateFacesSearchingTask": CreateFacesSearchingTaskRequest,
    "GetFigureCluster": GetFigureClusterRequest,
    "BatchGetFigureCluster": BatchGetFigureClusterRequest,
    "QueryFigureClusters": QueryFigureClustersRequest,
    "QuerySimilarImageClusters": QuerySimilarImageClustersRequest,
    "UpdateFigureCluster": UpdateFigureClusterRequest,
    "CreateFigureClustersMergingTask": CreateFigureClustersMergingTaskRequest,
    "SearchImageFigureCluster": SearchImageFigureClusterRequest,
    "DetectImageFaces": DetectImageFacesRequest,
    "CompareImageFaces": CompareImageFacesRequest,
    "GetTask": GetTaskRequest,
    "ListTasks": ListTasksRequest,
    "SimpleQuery": SimpleQueryRequest,
    "ListDatasets": ListDatasetsRequest,
}
"""Operation name -> request model, for every operation OpenIMM serves."""


def parse_request(model: type[M], body: Mapping[str, Any]) -> M:
    """Validate `body` (IMM keys) into `model`; raise MissingParameter or InvalidArgument."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("The request body must be a JSON object.")
    # Before the models: a lone surrogate fails every encoder behind them (SQLite, replies).
    where = lone_surrogate_at(dict(body))
    if where is not None:
        raise InvalidArgument(f"The parameter {_spell(where)} {NOT_UNICODE}.")
    try:
        return model.model_validate(dict(body))
    except ValidationError as exc:
        raise _to_imm_error(exc) from None


def _to_imm_error(exc: ValidationError) -> MissingParameter | InvalidArgument:
    # One error per reply, as IMM does; a missing parameter is the likeliest cause of the rest.
    errors = exc.errors(include_url=False, include_input=False)
    for error in errors:
        if error["type"] == "missing":
            return MissingParameter(f"The parameter {_parameter(error)} is required.")
    error = errors[0]
    return InvalidArgument(f"The parameter {_parameter(error)} {_reason(error)}.")


def _parameter(error: ErrorDetails) -> str:
    return _spell(error["loc"])


def _spell(loc: tuple[str | int, ...]) -> str:
    # IMM's flattened spelling: Files.1.URI (list positions count from 1)
    return ".".join(str(p + 1) if isinstance(p, int) else _key(p) for p in loc) or "body"


def _key(key: str) -> str:
    # a map key is the client's: a lone surrogate is shown escaped (a reply could not
    # carry it), a long key shortened
    shown = key.encode("utf-8", "backslashreplace").decode()
    return shown if len(shown) <= 64 else f"{shown[:61]}..."


_KIND = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing_size": "must be an integer of a sensible size",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be a boolean (true or false)",
    "bool_parsing": "must be a boolean (true or false)",
    "list_type": "must be a list (a JSON array)",
    "dict_type": "must be an object (a JSON object)",
    "model_type": "must be an object (a JSON object)",
    "model_attributes_type": "must be an object (a JSON object)",
    "frozen_instance": "cannot be changed",
}


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == CUSTOM_ERROR:
        return error["msg"]
    if kind in _KIND:
        return _KIND[kind]
    bounded = {
        "too_short": f"must have at least {_items(ctx.get('min_length'))}",
        "too_long": f"must have at most {_items(ctx.get('max_length'))}",
        "string_too_short": f"must be at least {ctx.get('min_length')} characters long",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters long",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "literal_error": f"must be {ctx.get('expected')}",
    }
    return bounded.get(kind, "has an invalid value")


def _items(count: object) -> str:
    return f"{count} item" if count == 1 else f"{count} items"
