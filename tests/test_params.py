"""The numeric parameter tables: each field's range is what the parsers enforce, what /openapi.json documents, and its
default is the request's own, so the document cannot drift from the validation."""

from __future__ import annotations

import pytest

from function.dialects import params, roboflow, roboflow_server
from function.errors import BadParameter
from function.http.openapi import document
from function.models.params import PredictParams

TABLES = {"platform": params.NUMBERS, "roboflow": roboflow.QUERY_NUMBERS, "roboflow_server": roboflow_server.BODY_NUMBERS}
# Which documented routes each table's fields belong to (`confidence` is a different field in each).
ROUTES = {"platform": ("/predict", "/api/models/", "/v1/predict/"), "roboflow": ("/{project}/",),
          "roboflow_server": ("/infer/",)}
FIELDS = [(table, name) for table, numbers in TABLES.items() for name in numbers]


def _outside(number: params.Number) -> tuple[str, str]:
    step = 1 if number.kind is int else 0.001
    return str(number.low - step), str(number.high + step)


@pytest.mark.parametrize("table,name", FIELDS)
def test_each_field_takes_its_range_and_refuses_past_it(table, name):
    number = TABLES[table][name]
    assert number.parse(name, str(number.low)) == number.low and number.parse(name, str(number.high)) == number.high
    for raw in _outside(number):
        with pytest.raises(BadParameter, match=f"'{name}' must be .* in {number.low}-{number.high}"):
            number.parse(name, raw)


def _documented() -> dict[tuple[str, str], dict]:
    """Every numeric field /openapi.json documents: (where, name) -> its schema."""
    found: dict[tuple[str, str], dict] = {}
    for path, item in document()["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                found[(path, parameter["name"])] = parameter["schema"]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                for name, schema in media["schema"].get("properties", {}).items():
                    found[(path, name)] = schema
    return found


@pytest.mark.parametrize("table,name", FIELDS)
def test_the_document_shows_each_fields_type_range_and_default_from_the_table(table, name):
    schema = TABLES[table][name].schema()
    documented = [found for (path, field), found in _documented().items()
                  if field == name and path.startswith(ROUTES[table]) and "minimum" in found]
    assert documented, f"{name} is not documented"
    # HUB documents `iou` with its own default (0.45); everything else is the table's, exactly.
    assert any(found == schema for found in documented), (name, documented)
    for found in documented:
        assert (found["type"], found["minimum"], found["maximum"]) == (schema["type"], schema["minimum"], schema["maximum"])


def test_the_model_fields_defaults_are_the_requests_defaults():
    defaults = PredictParams()
    assert {name: params.NUMBERS[name].default for name in params.MODEL_FIELDS} == \
        {name: getattr(defaults, name) for name in params.MODEL_FIELDS}
