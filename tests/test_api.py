"""The public surface is what the README documents; input bindings parse as documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import graph_analysis
from graph_analysis.bindings import parse_bindings, parse_dim, parse_input_shape
from graph_analysis.errors import ShapeBindingError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_graph_analysis_exports_what_the_readme_documents() -> None:
    text = README.read_text()
    match = re.search(r"`graph_analysis` exports exactly: (.+?)\(errors", text, re.S)
    assert match, "README must list graph_analysis's exports"
    documented = set(re.findall(r"`(\w+)`", match.group(1)))
    assert documented == set(graph_analysis.__all__)
    for name in graph_analysis.__all__:
        assert hasattr(graph_analysis, name)


def test_parse_input_shapes() -> None:
    assert parse_input_shape("1,3,224,224").dims == (1, 3, 224, 224)
    assert parse_input_shape("1x3x224x224").name is None
    spec = parse_input_shape("pixel_values=2,3,32,32")
    assert (spec.name, spec.dims) == ("pixel_values", (2, 3, 32, 32))
    assert parse_input_shape("scalar=").dims == ()
    assert parse_dim("p2o.DynamicDimension.0=4") == ("p2o.DynamicDimension.0", 4)


def test_parse_bindings_collects_everything() -> None:
    b = parse_bindings(["ids=1,128", "mask=1,128"], ["seq=128"], 2, ["ids=int64", "fp16"])
    assert [s.name for s in b.shapes] == ["ids", "mask"]
    assert b.dims == {"seq": 128}
    assert b.batch == 2
    assert b.dtypes == {"ids": "INT64", None: "FLOAT16"}
    assert not b.is_empty
    assert parse_bindings().is_empty


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_input_shape("1,a,3"), "not a whole number"),
        (lambda: parse_input_shape("1,-3"), "must be >= 0"),
        (lambda: parse_input_shape(""), "empty shape"),
        (lambda: parse_dim("seq"), "expected NAME=VALUE"),
        (lambda: parse_dim("seq=0"), "must be > 0"),
        (lambda: parse_bindings(["1,2", "x=1,2"]), "name every input"),
        (lambda: parse_bindings(["x=1", "x=2"]), "named twice"),
        (lambda: parse_bindings(input_dtypes=["float7"]), "unknown data type"),
        (lambda: parse_bindings(batch=0), "must be > 0"),
    ],
)
def test_bad_bindings_raise(call: object, message: str) -> None:
    with pytest.raises(ShapeBindingError, match=message):
        call()  # type: ignore[operator]
