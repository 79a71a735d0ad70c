"""Hostile model input: every command resolves a task's model the same way (a builtin or a
valid graph file, graph.zoo.resolve_model), and a graph file is checked field by field, sizes
before anything is built (docs/CONTRACTS.md §scenario)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aegis_core.graph.ir import MAX_GRAPH_BYTES, load_graph
from aegis_core.graph.zoo import build_model, resolve_model
from aegis_core.model.errors import InputError
from aegis_core.tools.cli import main

COMMANDS = [
    ["admit"],
    ["sim", "--out", "{out}"],
    ["check", "--runs", "1"],
    ["memory"],
    ["exec", "--backend", "mock", "--out", "{out}"],
]


def _scenario(tmp_path: Path, model: str, extra: str = "") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: s\nduration_ms: 50\ntasks:\n"
        f"  - {{name: a, period_ms: 10, wcet_ms: 1, model: '{model}'{extra}}}\n"
    )
    return path


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aegis: error: "), err
    return err


def _not_graphs(tmp_path: Path) -> dict[str, str]:
    """Readable files of every kind that are not graph files."""
    (tmp_path / "other.yaml").write_text("name: x\ntasks: []\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "half.json").write_text('{"name": "g", "batch": 1}')
    files = {"passwd": "/etc/passwd"} if Path("/etc/passwd").is_file() else {}
    files.update(
        yaml=str(tmp_path / "other.yaml"),
        binary=str(tmp_path / "blob.bin"),
        list=str(tmp_path / "list.json"),
        empty=str(tmp_path / "empty.json"),
        half=str(tmp_path / "half.json"),
    )
    return files


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_a_model_that_is_not_a_graph(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for kind, model in _not_graphs(tmp_path).items():
        path = _scenario(tmp_path, model)
        argv = [command[0], str(path), *(a.format(out=out) for a in command[1:])]
        err = _refused(capsys, argv)
        assert "task 'a'" in err and "field 'model'" in err, (kind, err)
        assert Path(model).name in err, (kind, err)
        assert not out.exists(), kind  # refused before any output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_still_takes_a_builtin_and_a_graph_file(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(build_model("mlp", input_shape=(64,)).to_dict()))
    for model in ("mlp", str(graph)):
        out = tmp_path / f"out-{Path(model).stem}"
        argv = [command[0], str(_scenario(tmp_path, model)),
                *(a.format(out=out) for a in command[1:])]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        capsys.readouterr()


def test_a_builtin_too_large_to_allocate_is_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario(tmp_path, "resnet18", ", input_shape: [3, 20000, 20000]")
    for command in ("admit", "memory"):
        err = _refused(capsys, [command, str(path)])
        assert "field 'input_shape'" in err and "over the cap" in err
    with pytest.raises(InputError, match="kernel scratch"):
        resolve_model("mlp", batch=1 << 22)  # 6 tensors of 16 GiB


# ----------------------------------------------------------------------------- graph files


def _graph_doc() -> dict[str, Any]:
    return build_model("tiny_cnn").to_dict()


def _tensor(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["tensors"] if t["name"] == name)


def _mutations() -> dict[str, tuple[Any, str]]:
    """name -> (function editing a graph doc, what the error must say)."""

    def shape(value: Any) -> Any:
        return lambda d: _tensor(d, "conv1.out").__setitem__("shape", value)

    def op_field(key: str, value: Any) -> Any:
        return lambda d: d["ops"][0].__setitem__(key, value)

    def many_big(d: dict[str, Any]) -> None:  # each under the cap, together over it
        each = [1 << 16, 1 << 15]  # 2**31 elements = 8 GiB each
        d["tensors"] += [{"name": f"pad{i}", "shape": each, "role": "weight"} for i in range(9)]

    return {
        "1e12 elements": (shape([1, 1000, 1000, 1000000]), r"tensor 'conv1.out'.*'shape'.*cap"),
        "5000 dims": (shape([1] * 5000), r"tensor 'conv1.out'.*'shape'.*1 to 8"),
        "zero dim": (shape([1, 16, 0, 32]), r"tensor 'conv1.out'.*'shape'.*positive"),
        "negative dim": (shape([1, 16, -32, 32]), r"tensor 'conv1.out'.*'shape'.*positive"),
        "float dim": (shape([1, 16, 32.0, 32]), r"tensor 'conv1.out'.*'shape'.*positive"),
        "bool dim": (shape([True, 16, 32, 32]), r"tensor 'conv1.out'.*'shape'.*positive"),
        "total over cap": (many_big, r"field 'tensors'.*bytes in all exceed the cap"),
        "batch 1.9": (lambda d: d.__setitem__("batch", 1.9), r"field 'batch'.*integer"),
        "batch true": (lambda d: d.__setitem__("batch", True), r"field 'batch'.*integer"),
        "batch string": (lambda d: d.__setitem__("batch", "1"), r"field 'batch'.*integer"),
        "negative flops": (op_field("flops", -5), r"op 'conv1'.*'flops'.*integer"),
        "float flops": (op_field("flops", 1.5), r"op 'conv1'.*'flops'.*integer"),
        "bool bytes": (op_field("bytes", True), r"op 'conv1'.*'bytes'.*integer"),
        "huge flops": (op_field("flops", 1 << 70), r"op 'conv1'.*'flops'.*2\*\*62"),
        "name not a string": (op_field("name", 5), r"ops\[0\].*'name'.*string"),
        "inputs not names": (op_field("inputs", [1, 2]), r"op 'conv1'.*'inputs'"),
        "unknown input": (op_field("inputs", ["nope"]), r"op 'conv1'.*'inputs'.*'nope'"),
        "role": (lambda d: _tensor(d, "conv1.w").__setitem__("role", "bias"), r"'role'"),
        "dtype": (lambda d: _tensor(d, "conv1.w").__setitem__("dtype", "int8"), r"'dtype'"),
        "tensors not a list": (lambda d: d.__setitem__("tensors", {}), r"'tensors'.*list"),
        "duplicate tensor": (lambda d: d["tensors"].append(d["tensors"][0]), "duplicate"),
        "attrs not an object": (op_field("attrs", [1]), r"op 'conv1'.*'attrs'"),
    }


@pytest.mark.parametrize("case", sorted(_mutations()))
def test_a_bad_graph_file_names_the_file_the_tensor_and_the_field(
    case: str, tmp_path: Path
) -> None:
    edit, match = _mutations()[case]
    doc = _graph_doc()
    edit(doc)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=rf"g\.json: not a valid graph file: .*{match}"):
        load_graph(path)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_a_graph_file_are_refused(literal: str, tmp_path: Path) -> None:
    text = json.dumps(_graph_doc()).replace('"flops": ', f'"flops": {literal}, "x": ', 1)
    path = tmp_path / "g.json"
    path.write_text(text)
    with pytest.raises(InputError, match=r"g\.json: not a"):
        load_graph(path)


def test_a_graph_file_is_read_bounded_and_must_be_a_regular_file(tmp_path: Path) -> None:
    import os

    with pytest.raises(InputError, match="graph file"):
        load_graph(tmp_path)  # a directory
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(
        InputError, match=r"fifo\.json: cannot read a FIFO as a .*: not a regular file"
    ):
        load_graph(fifo)  # no writer: it would block forever
    if Path("/dev/zero").exists():
        with pytest.raises(
            InputError,
            match=r"/dev/zero: cannot read a character device as a .*: not a regular file",
        ):
            load_graph("/dev/zero")
    big = tmp_path / "big.json"
    with big.open("w") as fh:
        fh.truncate((16 << 20) + 1)  # sparse: nothing written
    with pytest.raises(InputError, match="larger than"):
        load_graph(big)


def test_the_cap_is_what_the_executor_allocates() -> None:
    assert MAX_GRAPH_BYTES == 1 << 36
    graph = resolve_model("tiny_cnn")  # well under the cap
    assert graph == build_model("tiny_cnn")


def test_a_bad_graph_file_through_the_cli_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _graph_doc()
    _tensor(doc, "conv1.out")["shape"] = [1, 1000, 1000, 1000000]
    graph = tmp_path / "huge.json"
    graph.write_text(json.dumps(doc))
    path = _scenario(tmp_path, str(graph))
    for command in (["exec", "--backend", "numpy"], ["admit"], ["memory"]):
        err = _refused(capsys, [*command[:1], str(path), *command[1:]])
        assert "huge.json" in err and "tensor 'conv1.out'" in err and "field 'shape'" in err


@pytest.mark.parametrize(
    "command",
    [["profile", "--backend", "mock", "--out", "{out}"], ["compare", "--results", "{out}"],
     ["calibrate", "--backend", "mock", "--out", "{out}/o.json"]],
    ids=lambda c: c[0],
)  # fmt: skip
def test_the_other_commands_refuse_it_too(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    path = _scenario(tmp_path, str(_not_graphs(tmp_path)["yaml"]))
    err = _refused(capsys, [command[0], *(a.format(out=out) for a in command[1:]), str(path)])
    assert "task 'a'" in err and "field 'model'" in err and "other.yaml" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("view", "axes", "match"),
    [
        ([-2, -64, 128], [0, 1, 2], "attribute view must be a list"),
        ([2.0, 64, 128], [0, 1, 2], "attribute view must be a list"),
        ([16, 128], [True, 0], "attribute axes must be a list"),
        ([1] * 9, list(range(9)), "attribute view must be a list of 1 to 8"),
    ],
)
def test_a_permute_view_is_checked_like_a_shape(
    view: list[Any], axes: list[Any], match: str, tmp_path: Path
) -> None:
    doc = build_model("bert_tiny", input_shape=(16, 128)).to_dict()
    op = next(o for o in doc["ops"] if o["fn"] == "permute")
    op["attrs"] = {"view": view, "axes": axes}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=rf"g\.json: not a valid graph file: .*{match}"):
        load_graph(path)


def test_a_graph_file_with_too_many_ops_or_tensors_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aegis_core.graph.ir as ir

    doc = _graph_doc()
    ops, tensors = len(doc["ops"]), len(doc["tensors"])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(ir, "MAX_OPS", ops - 1)
    with pytest.raises(InputError, match=rf"field 'ops': {ops} entries, more than {ops - 1}"):
        load_graph(path)
    monkeypatch.setattr(ir, "MAX_OPS", ops)
    monkeypatch.setattr(ir, "MAX_TENSORS", tensors - 1)
    with pytest.raises(InputError, match=rf"field 'tensors': {tensors} entries, more than"):
        load_graph(path)
    monkeypatch.undo()
    assert load_graph(path) == build_model("tiny_cnn")
