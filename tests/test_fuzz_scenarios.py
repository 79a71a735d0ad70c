"""The bad-input promise over generated scenario documents (docs/CONTRACTS.md §bad-input):
whatever a scenario file holds, ``admit``, ``sim`` and ``memory`` exit 0, 1 or 2; on 2 they
print exactly one line, ``aegis: error: ...``, with no raw control character and no traceback,
and ``sim`` writes nothing into ``--out``.

Documents are valid-ish scenarios with mutated fields (wrong types, huge, negative, non-finite
numbers, unknown keys, control characters, missing fields, lists for mappings) written as
YAML, and sometimes their text cut or spliced. Every run is bounded by counts: at most three
tasks, and ``sim`` over a horizon of 10 us (``--duration-ms 0.01``: at most 10 000 jobs a task
even at the shortest period, 1 ns). ``FUZZ_EXAMPLES`` sets the number of examples (default
60 per command) for a long search by hand.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_core.model.overheads import Overhead, Overheads
from aegis_core.run.testing import make_profile
from aegis_core.tools.cli import main

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
TASK_KEYS = ("name", "model", "batch", "period_ms", "deadline_ms", "wcet_ms", "profile",
             "arrival", "slack_ms", "offset_ms", "jitter_ms", "priority", "budget",
             "kernels_ms", "input_shape", "on_overrun")  # fmt: skip
TOP_KEYS = ("name", "policy", "duration_ms", "seed", "gpu", "tasks", "overheads")

weird_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from("\n\r\t\x1b\x00\x85\u2028\u202e#:[]{}&*!|>'\"%@`"),
    max_size=12,
)
numbers = st.one_of(
    st.integers(-3, 100),
    st.integers(-(1 << 70), 1 << 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-9, max_value=1e-3),
    st.sampled_from([0, -1, 1e13, 1e300, 4.6e12, 2**63, 1e-300, 33.3, 0.5]),
)
scalars = st.one_of(numbers, weird_text, st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(weird_text, inner, max_size=3),
    max_leaves=6,
)
"""Any YAML value: numbers, strings, lists, mappings, nested."""


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, else ``bad``."""
    return st.one_of(good, good, good, bad)


plain_field = {
    "name": mostly(st.sampled_from(["a", "b", "det", "x.y-z_1"]), weird_text),
    "model": st.sampled_from(
        ["mlp", "tiny_cnn", "bert_tiny", "resnet18", "nope", "/dev/zero", "x" * 5000]
    ),
    "batch": mostly(st.integers(1, 4), numbers),
    "period_ms": mostly(st.sampled_from([5, 10, 20, 33.3]), numbers),
    "deadline_ms": mostly(st.sampled_from([5, 10, 15, 2]), numbers),
    "wcet_ms": mostly(st.sampled_from([0.5, 1, 2, 4.5]), numbers),
    "profile": mostly(
        st.sampled_from(["good.json", "good.json", "/dev/zero", "missing.json", ".", "p" * 5000]),
        weird_text,
    ),
    "arrival": mostly(st.sampled_from(["periodic", "sporadic", "poisson"]), weird_text),
    "slack_ms": mostly(st.sampled_from([0, 1, 5]), numbers),
    "offset_ms": mostly(st.sampled_from([0, 1]), numbers),
    "jitter_ms": mostly(st.sampled_from([0, 1]), numbers),
    "priority": mostly(st.integers(0, 5), numbers),
    "budget": st.fixed_dictionaries({"memory_mb": mostly(st.sampled_from([64, 1]), numbers)}),
    "kernels_ms": st.lists(mostly(st.sampled_from([0.25, 0.5]), numbers), max_size=4),
    "input_shape": st.lists(mostly(st.integers(1, 64), numbers), max_size=4),
    "on_overrun": mostly(st.sampled_from(["continue", "skip-next"]), weird_text),
}
top_field = {
    "name": mostly(st.sampled_from(["demo", "fz"]), weird_text),
    "policy": mostly(
        st.sampled_from(["np-edf", "lp-edf", "np-fp", "fifo", "unscheduled"]), weird_text
    ),
    "duration_ms": mostly(st.sampled_from([1, 50]), numbers),
    "seed": mostly(st.integers(0, 5), numbers),
    "gpu": st.fixed_dictionaries({"memory_mb": mostly(st.sampled_from([1024, 8]), numbers)}),
    "overheads": mostly(
        st.sampled_from(["host.json", "host.json", "/dev/zero", "missing.json", "o" * 5000]),
        weird_text,
    ),
}


@st.composite
def mutated(
    draw: st.DrawFn, doc: dict[str, Any], fields: dict[str, Any], keys: tuple[str, ...]
) -> dict[str, Any]:
    """``doc`` with up to three changes: a field set (to a plausible or any value), a field
    removed, an unknown key added."""
    doc = dict(doc)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        change = draw(st.sampled_from(["set", "set", "any", "drop", "unknown"]))
        key = draw(st.sampled_from(keys))
        if change == "set" and key in fields:
            doc[key] = draw(fields[key])
        elif change in ("set", "any"):
            doc[key] = draw(values)
        elif change == "drop":
            doc.pop(key, None)
        else:
            doc[draw(weird_text)] = draw(values)
    return doc


@st.composite
def documents(draw: st.DrawFn) -> str:
    """The YAML text of a valid-ish scenario with mutations."""
    tasks: list[Any] = []
    for i in range(draw(st.integers(1, 3))):
        task = {"name": f"t{i}", "period_ms": 10, "wcet_ms": 1}
        if draw(st.booleans()):
            task["model"] = draw(st.sampled_from(["mlp", "tiny_cnn"]))
        tasks.append(draw(mutated(task, plain_field, TASK_KEYS)))
    if draw(st.sampled_from([False] * 9 + [True])):
        tasks.append(draw(values))  # a task that is no mapping
    doc: Any = draw(mutated({"name": "fz", "duration_ms": 50, "tasks": tasks}, top_field,
                            TOP_KEYS))  # fmt: skip
    if draw(st.sampled_from([False] * 19 + [True])):
        doc = draw(values)  # a document that is no mapping
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()))
    shape = draw(st.sampled_from(["whole"] * 8 + ["cut", "spliced"]))
    if shape == "cut":  # cut mid-way (a truncated file)
        text = text[: draw(st.integers(0, len(text)))]
    elif shape == "spliced":  # text spliced in (YAML syntax, aliases, tags)
        at = draw(st.integers(0, len(text)))
        snippet = draw(
            weird_text
            | st.sampled_from(
                [
                    "&a ",
                    "*a",
                    "!!binary ",
                    "!!python/name:os.system ",
                    "? [1]\n: 2\n",
                    "<<: *a\n",
                    "\t",
                    "- ",
                ]
            )
        )
        text = text[:at] + snippet + text[at:]
    return text


def check_promise(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    code = main(argv)
    cap = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code, cap.err)
    assert "Traceback" not in cap.err
    if code == 2:
        lines = cap.err.split("\n")
        assert len(lines) == 2 and lines[1] == "", cap.err  # one line, ended
        assert lines[0].startswith("aegis: error: "), cap.err
        assert not RAW_CONTROL.search(lines[0]), cap.err
    return code


fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def _write(tmp_path: Path, text: str) -> Path:
    """The scenario file, next to a valid profile (``good.json``) and overheads file
    (``host.json``) that its fields may name."""
    if not (tmp_path / "good.json").exists():
        make_profile([900_000 + 1000 * i for i in range(20)], task="t").save(tmp_path / "good.json")
        Overheads.of_bounds({w: 1000 for w in Overhead}, backend="mock").save(
            tmp_path / "host.json"
        )
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


@fuzz
@given(text=documents())
def test_admit_keeps_the_promise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    check_promise(["admit", str(_write(tmp_path, text))], capsys)


@fuzz
@given(text=documents())
def test_memory_keeps_the_promise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    check_promise(["memory", str(_write(tmp_path, text))], capsys)


@fuzz
@given(text=documents())
def test_sim_keeps_the_promise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    out = tmp_path / "out"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    code = check_promise(["sim", str(_write(tmp_path, text)), "--out", str(out), "--quiet",
                          "--no-perfetto", "--duration-ms", "0.01"], capsys)  # fmt: skip
    if code == 2:
        assert not out.exists() or not any(out.iterdir()), "exit 2 wrote results"
