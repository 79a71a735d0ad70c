"""Model graphs and the builtin zoo (aegis_core.graph): shapes, costs, lifetimes, chunks, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_core.graph.ir import FNS, Graph, Op, Tensor, load_graph
from aegis_core.graph.zoo import MODELS, build_model
from aegis_core.model.errors import InputError

SMALL = {
    "resnet18": (3, 64, 64),
    "mobilenet_v2": (3, 32, 32),
    "bert_tiny": (16, 128),
    "mlp": (64,),
    "tiny_cnn": (3, 8, 8),
}
OUTPUT = {
    "resnet18": (1000,),
    "mobilenet_v2": (1000,),
    "bert_tiny": None,  # (seq, 128): the input's shape
    "mlp": (1024,),
    "tiny_cnn": (10,),
}


def test_the_zoo_lists_its_models_and_the_scenario_names_agree() -> None:
    from aegis_core.model.scenario import BUILTIN_MODELS

    assert set(MODELS) == set(BUILTIN_MODELS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("small", [False, True], ids=["default", "small"])
def test_each_model_builds_with_a_consistent_graph(name: str, small: bool) -> None:
    shape = SMALL[name] if small else MODELS[name]
    g = build_model(name, batch=2, input_shape=shape if small else None)
    assert g.name == name and g.batch == 2 and g.input_shape == shape
    assert g.tensors[g.input] == Tensor("input", (2, *shape), "input")
    out = OUTPUT[name] or shape
    assert g.tensors[g.output].shape == (2, *out)
    assert g.output == g.ops[-1].output
    produced = [op.output for op in g.ops]
    assert len(set(produced)) == len(produced)
    for op in g.ops:
        assert FNS[op.fn] == op.kind
        assert op.flops > 0
        moved = sum(g.tensors[i].nbytes for i in (*op.inputs, op.output))
        assert op.bytes == moved
        for i in op.inputs:
            assert i in g.tensors
    assert g.flops == sum(op.flops for op in g.ops)
    weights = [t for t in g.tensors.values() if t.role == "weight"]
    assert g.weights_bytes == sum(t.size * 4 for t in weights) > 0
    others = [t for t in g.tensors.values() if t.role != "weight"]
    assert g.activation_bytes == sum(t.nbytes for t in others)


@pytest.mark.parametrize(
    ("name", "gmac", "params_m"),
    [("resnet18", 1.82, 11.69), ("mobilenet_v2", 0.30, 3.50)],
)
def test_flops_and_parameters_match_the_published_counts(
    name: str, gmac: float, params_m: float
) -> None:
    g = build_model(name)
    assert g.flops / 2 == pytest.approx(gmac * 1e9, rel=0.10)
    assert g.weights_bytes / 4 == pytest.approx(params_m * 1e6, rel=0.05)


def test_conv_and_gemm_flops_follow_their_formulas() -> None:
    g = build_model("tiny_cnn")
    conv2 = next(op for op in g.ops if op.name == "conv2")
    # 2 * N*K*P*Q * C*R*S: 16 -> 32 channels, 3x3, stride 2 on 32x32 -> 16x16
    assert conv2.flops == 2 * 1 * 32 * 16 * 16 * 16 * 3 * 3
    assert g.tensors[conv2.output].shape == (1, 32, 16, 16)
    assert dict(conv2.attrs) == {"stride": 2, "pad": 1, "groups": 1}
    fc = g.ops[-1]
    assert (fc.fn, fc.flops) == ("linear", 2 * 64 * 10)
    mb = build_model("mobilenet_v2")
    dw = next(op for op in mb.ops if op.name == "block1.dw")
    assert dw.attr("groups") == 96
    assert mb.tensors[dw.inputs[1]].shape == (96, 1, 3, 3)
    assert dw.flops == 2 * 96 * 56 * 56 * 9
    assert dw.attr("missing", "default") == "default"


def test_bert_attention_is_split_into_heads_and_scaled() -> None:
    g = build_model("bert_tiny", input_shape=(32, 128))
    ops = {op.name: op for op in g.ops}
    assert g.tensors[ops["layer0.q.heads"].output].shape == (1, 2, 32, 64)
    assert g.tensors[ops["layer0.k.heads"].output].shape == (1, 2, 64, 32)
    scores = ops["layer0.scores"]
    assert scores.fn == "matmul" and scores.attr("scale") == pytest.approx(64**-0.5)
    assert g.tensors[scores.output].shape == (1, 2, 32, 32)
    assert g.tensors[ops["layer0.merge"].output].shape == (1, 32, 128)
    assert [op.fn for op in g.ops].count("layernorm") == 4
    assert [op.fn for op in g.ops].count("gelu") == 2


def test_flops_scale_linearly_with_batch() -> None:
    for name, shape in SMALL.items():
        one = build_model(name, 1, shape)
        four = build_model(name, 4, shape)
        assert four.flops == 4 * one.flops
        assert four.weights_bytes == one.weights_bytes
        assert four.activation_bytes == 4 * one.activation_bytes


def test_the_default_output_shapes() -> None:
    assert build_model("resnet18").tensors["fc.out"].shape == (1, 1000)
    bert = build_model("bert_tiny")
    assert bert.tensors[bert.output].shape == (1, 128, 128)
    tiny = build_model("tiny_cnn")
    assert tiny.tensors[tiny.output].shape == (1, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_lifetimes_are_producer_to_last_use(name: str) -> None:
    g = build_model(name, input_shape=SMALL[name])
    life = g.lifetimes()
    non_weights = {n for n, t in g.tensors.items() if t.role != "weight"}
    assert set(life) == non_weights
    assert life[g.input][0] == 0
    assert life[g.output][1] == len(g.ops) - 1
    for i, op in enumerate(g.ops):
        assert life[op.output][0] == i
        for name_ in op.inputs:
            if name_ in life:
                first, last = life[name_]
                assert first <= i <= last
    for first, last in life.values():
        assert 0 <= first <= last < len(g.ops)


def test_exact_lifetimes_of_tiny_cnn() -> None:
    assert build_model("tiny_cnn").lifetimes() == {
        "input": (0, 0),
        "conv1.out": (0, 1),
        "relu1.out": (1, 2),
        "conv2.out": (2, 3),
        "relu2.out": (3, 4),
        "conv3.out": (4, 5),
        "relu3.out": (5, 6),
        "avgpool.out": (6, 7),
        "fc.out": (7, 7),
    }


def test_a_residual_input_lives_until_the_add() -> None:
    g = build_model("resnet18", input_shape=(3, 32, 32))
    index = {op.name: i for i, op in enumerate(g.ops)}
    block_in = g.ops[index["layer1.0.conv1"]].inputs[0]  # the maxpool output
    assert g.lifetimes()[block_in] == (index["maxpool"], index["layer1.0.add"])


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000])
def test_chunks_cover_every_op_in_order(name: str, n: int) -> None:
    g = build_model(name, input_shape=SMALL[name])
    chunks = g.chunks(n)
    assert len(chunks) == min(n, len(g.ops))
    assert all(len(c) > 0 and c.step == 1 for c in chunks)
    assert [i for c in chunks for i in c] == list(range(len(g.ops)))


def test_chunks_balance_flops() -> None:
    g = build_model("resnet18", input_shape=(3, 64, 64))
    chunks = g.chunks(4)
    loads = [sum(g.ops[i].flops for i in c) for c in chunks]
    biggest_op = max(op.flops for op in g.ops)
    # a greedy prefix split misses the ideal share by at most one op's FLOPs per cut
    assert max(loads) <= g.flops / 4 + 2 * biggest_op
    assert min(loads) >= g.flops / 4 - 2 * biggest_op
    assert g.chunks(1) == [range(len(g.ops))]


def test_chunks_rejects_a_non_positive_count() -> None:
    with pytest.raises(InputError, match="chunk count"):
        build_model("mlp").chunks(0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dict_round_trip_through_json(name: str, tmp_path: Path) -> None:
    g = build_model(name, batch=2, input_shape=SMALL[name])
    doc = json.loads(json.dumps(g.to_dict()))
    assert Graph.from_dict(doc) == g
    path = tmp_path / "g.json"
    path.write_text(json.dumps(g.to_dict()))
    loaded = load_graph(path)
    assert loaded == g
    assert loaded.lifetimes() == g.lifetimes()
    assert all(isinstance(v, tuple) for op in loaded.ops for k, v in op.attrs if k == "view")


def test_from_dict_computes_missing_costs() -> None:
    g = build_model("tiny_cnn")
    doc = g.to_dict()
    for op in doc["ops"]:
        del op["flops"], op["bytes"]
    assert Graph.from_dict(doc) == g


def _doc(mutate: str) -> dict[str, object]:
    doc = build_model("tiny_cnn").to_dict()
    ops = doc["ops"]
    assert isinstance(ops, list)
    if mutate == "shape":
        ops[0]["output"] = "relu1.out"
    elif mutate == "fn":
        ops[1]["fn"] = "swish"
    elif mutate == "order":
        ops[0], ops[1] = ops[1], ops[0]
    elif mutate == "missing":
        del doc["tensors"]
    elif mutate == "format":
        doc["format"] = "aegis-graph/99"
    elif mutate == "weight":
        tensors = doc["tensors"]
        assert isinstance(tensors, list)
        tensors[1]["shape"] = [16, 3, 5, 5]
    return doc


@pytest.mark.parametrize("mutate", ["shape", "fn", "order", "missing", "format", "weight"])
def test_load_graph_rejects_a_bad_graph_naming_the_file(mutate: str, tmp_path: Path) -> None:
    path = tmp_path / f"bad-{mutate}.json"
    path.write_text(json.dumps(_doc(mutate)))
    with pytest.raises(InputError, match=rf"bad-{mutate}\.json"):
        load_graph(path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"name": "x"}', ""])
def test_load_graph_rejects_a_file_that_is_not_a_graph(text: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(InputError, match=r"broken\.json: not a valid graph file"):
        load_graph(path)


def test_load_graph_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.json"):
        load_graph(tmp_path / "nope.json")


def test_unknown_model_names_the_builtins() -> None:
    with pytest.raises(InputError, match=r"unknown model 'resnet50'.*bert_tiny.*tiny_cnn"):
        build_model("resnet50")


@pytest.mark.parametrize(
    ("name", "shape", "match"),
    [
        ("resnet18", (3, 16, 16), "too small for its strides"),
        ("mobilenet_v2", (3, 224, 31), "too small"),
        ("tiny_cnn", (3, 2, 2), "too small"),
        ("resnet18", (224, 224), "3 positive sizes"),
        ("mlp", (0,), "positive"),
        ("bert_tiny", (32, 64), "hidden size is fixed at 128"),
        ("bert_tiny", (32,), "2 positive sizes"),
    ],
)
def test_bad_input_shapes_are_input_errors(name: str, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(InputError, match=rf"model '{name}'.*{match}"):
        build_model(name, input_shape=shape)


@pytest.mark.parametrize("batch", [0, -1, True])
def test_bad_batch_is_an_input_error(batch: int) -> None:
    with pytest.raises(InputError, match="batch"):
        build_model("mlp", batch=batch)


def test_a_tensor_knows_its_size() -> None:
    t = Tensor("x", (2, 3, 4), "activation")
    assert (t.size, t.nbytes) == (24, 96)
    assert Tensor("h", (2, 3), "weight", "float16").nbytes == 12


def test_a_graph_checks_its_operators_on_creation() -> None:
    g = build_model("tiny_cnn")
    bad = Op("fc9", "gemm", "linear", ("input", "fc.w", "fc.b"), "fc.out")
    with pytest.raises(ValueError, match=r"fc9.*do not fit"):
        Graph(g.name, 1, g.input_shape, g.tensors, (bad,), g.input, "fc.out")
    wrong_kind = Op("fc9", "conv2d", "linear", ("avgpool.out", "fc.w", "fc.b"), "fc.out")
    with pytest.raises(ValueError, match="unknown kind/fn"):
        Graph(g.name, 1, g.input_shape, g.tensors, (wrong_kind,), g.input, "fc.out")
    with pytest.raises(ValueError, match="at least one operator"):
        Graph(g.name, 1, g.input_shape, g.tensors, (), g.input, g.output)
