"""Hostile scenario input (docs/CONTRACTS.md §bad-input): each class a review found breaking
the promise, several cases each. Every case exits 2 with one line ``aegis: error: ...`` naming
the file (and the task and field where there is one), no raw control character, nothing
written; the reads behind them are bounded (file size, alias and depth budgets, regular
files only)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from aegis_core.model.errors import (
    MAX_MESSAGE,
    FileError,
    InputError,
    ScenarioError,
    one_line,
    quote,
    show_path,
)
from aegis_core.model.files import (
    MAX_YAML_BYTES,
    read_json,
    read_user_bytes,
    read_user_text,
    user_file,
)
from aegis_core.model.scenario import (
    MAX_ALIAS_NODES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    load_scenario,
)
from aegis_core.tools.cli import main

RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e]")
TASKS = "name: demo\nduration_ms: 20\ntasks:\n"
TASK = "  - name: a\n    period_ms: 10\n    wcet_ms: 1\n"


def one_error_line(err: str) -> str:
    """The promise's shape: one line, ``aegis: error: ``, no raw control character."""
    assert "Traceback" not in err
    lines = err.split("\n")
    assert len(lines) == 2 and lines[1] == "", err
    assert lines[0].startswith("aegis: error: "), err
    assert not RAW_CONTROL.search(lines[0]), err
    assert len(lines[0]) <= MAX_MESSAGE + 20
    return lines[0]


def refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, path: Path, *commands: str
) -> list[str]:
    """Each command (default admit, sim, memory) on ``path`` exits 2 with one line, and sim
    writes nothing; the lines."""
    found = []
    for command in commands or ("admit", "sim", "memory"):
        out = tmp_path / f"out-{command}"
        extra = ["--out", str(out), "--quiet"] if command == "sim" else []
        assert main([command, str(path), *extra]) == 2, command
        cap = capsys.readouterr()
        found.append(one_error_line(cap.err))
        assert not out.exists()
    return found


def scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------- 1. YAML aliases


def laughs(levels: int = 7, width: int = 9) -> str:
    """A flow list of anchors, each one ``width`` aliases of the one before."""
    parts = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize(
    "text",
    [
        TASKS
        + "  - name: a\n    period_ms: 10\n    model: mlp\n    input_shape: "
        + laughs()
        + "\n",
        "name: demo\ntasks:\n  - name: " + laughs() + "\n    period_ms: 10\n",
        "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 8))
        + "name: demo\ntasks: *a7\n",
        TASKS + TASK + "    kernels_ms: " + laughs(levels=5, width=12) + "\n",
    ],
    ids=["in-a-list-field", "in-a-name", "top-level", "wide"],
)
def test_alias_expansion_is_refused_while_reading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    path = scenario(tmp_path, text)
    assert len(text) < 1000  # a small file ...
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)  # ... refused while composed, before anything expands it
    assert f"aliases repeat more than {MAX_ALIAS_NODES} values" in info.value.reason
    for line in refused(capsys, tmp_path, path):
        assert "invalid YAML at line" in line and "lol" not in line


def test_a_recursive_alias_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for i, text in enumerate(["name: demo\ntasks: &t [*t]\n", TASKS + "  - &t {name: a, x: *t}\n"]):
        line = refused(capsys, tmp_path, scenario(tmp_path, text, f"r{i}.yaml"), "admit")[0]
        assert "recursive value" in line


def test_aliases_within_the_budget_load(tmp_path: Path) -> None:
    """Anchors, aliases and merge keys stay usable: a task's fields shared, its own winning."""
    text = (
        TASKS
        + "  - &base\n    name: a\n    period_ms: 10\n    wcet_ms: 1\n"
        + "  - <<: *base\n    name: b\n    period_ms: 20\n"
        + "  - {<<: *base, name: c, wcet_ms: 2}\n"
    )
    s = load_scenario(scenario(tmp_path, text))
    assert [(t.name, t.period_ns, t.wcet_ns) for t in s.tasks] == [
        ("a", 10_000_000, 1_000_000), ("b", 20_000_000, 1_000_000), ("c", 10_000_000, 2_000_000)
    ]  # fmt: skip
    wide = TASKS + TASK + "    kernels_ms: [&k 0.25, *k, *k, *k]\n    wcet_ms: 1\n"
    with pytest.raises(ScenarioError, match="duplicate key 'wcet_ms'"):
        load_scenario(scenario(tmp_path, wide, "dup.yaml"))  # a key written twice still is one


@pytest.mark.parametrize(
    "text",
    [
        "name: demo\ntasks: [" + ",".join(["0"] * (MAX_YAML_NODES + 1)) + "]\n",
        TASKS + TASK + "    kernels_ms:\n" + "    - 0.001\n" * MAX_YAML_NODES,
        "name: demo\ntasks: [&b ["
        + ",".join(["0"] * 1000)
        + "]"
        + ", *b" * 9
        + ", 0" * 41_000
        + "]\n",  # aliases add 9 009 values (within their budget), 51 011 in all
    ],
    ids=["flow", "block", "aliases-within-their-budget"],
)
def test_a_document_of_too_many_values_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    """Pure-Python YAML is slow: a file under the size cap may still hold too many values."""
    assert len(text) <= MAX_YAML_BYTES
    for line in refused(capsys, tmp_path, scenario(tmp_path, text), "admit"):
        assert f"more than {MAX_YAML_NODES} values in the document" in line


# ----------------------------------------------------------------------- 2. nesting depth


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 1000 + "]" * 1000 + "\n",
        "a: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
        "".join("  " * i + "- \n" for i in range(200)) + "  " * 200 + "- 1\n",
        TASKS + TASK + "    kernels_ms: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists", "just-past-the-cap"],
)
def test_deep_nesting_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    for line in refused(capsys, tmp_path, scenario(tmp_path, text)):
        assert f"nested more than {MAX_YAML_DEPTH} levels deep" in line


def test_nesting_within_the_cap_reads(tmp_path: Path) -> None:
    """Just inside the cap the document is read and the field judged."""
    text = (
        TASKS + TASK + "    kernels_ms: " + "[" * (MAX_YAML_DEPTH - 3) + "]" * (MAX_YAML_DEPTH - 3)
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario(tmp_path, text))
    assert (info.value.task, info.value.field) == ("a", "kernels_ms[0]")


def test_deep_json_in_a_profile_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "p.json").write_text("[" * 100_000 + "]" * 100_000)
    path = scenario(tmp_path, TASKS + "  - name: a\n    period_ms: 10\n    profile: p.json\n")
    line = refused(capsys, tmp_path, path, "admit")[0]
    assert "task 'a': field 'profile'" in line and "invalid JSON" in line


# ------------------------------------------------------------------- 3. lists and maps as keys


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("? [1, 2]\n: 3\n", "list"),
        ("{[1]: 2}\n", "list"),
        (TASKS + TASK + "    ? {x: 1}\n    : 3\n", "mapping"),
        (TASKS + TASK + "    budget: {? [memory_mb]: 3}\n", "list"),
    ],
    ids=["block-list", "flow-list", "mapping-in-task", "nested"],
)
def test_a_list_or_mapping_as_a_key_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, kind: str
) -> None:
    for line in refused(capsys, tmp_path, scenario(tmp_path, text)):
        assert f"a key must be a single value, not a {kind}" in line


# ------------------------------------------------------------------------- 4. numbers


@pytest.mark.parametrize(
    ("task", "top", "field", "fragment"),
    [
        ("    period_ms: 1e400\n", "", "period_ms", "finite number, got inf"),
        ("    period_ms: -1e400\n", "", "period_ms", "finite number, got -inf"),
        ("    period_ms: .nan\n", "", "period_ms", "finite number, got nan"),
        ("    period_ms: 1e13\n", "", "period_ms", "past the limit of 2**62 ns"),
        ("    period_ms: 4611686018428\n", "", "period_ms", "past the limit"),
        ("    arrival: sporadic\n    slack_ms: 1e300\n", "", "slack_ms", "past the limit"),
        ("    offset_ms: 9223372036854775807\n", "", "offset_ms", "past the limit"),
        ("    priority: 9223372036854775808\n", "", "priority", "must be <= 9223372036854775807"),
        ("    priority: -9223372036854775809\n", "", "priority", "must be >= -9223372036854775808"),
        ("    model: mlp\n    batch: 1000000\n", "", "batch", "must be <= 65536"),
        ("    model: mlp\n    input_shape: [1000000000000]\n", "", "input_shape", "at most 8"),
        ("    model: mlp\n    batch: 65536\n    input_shape: [65537]\n", "", "input_shape",
         "past the limit of 4294967296"),
        ("    budget: {memory_mb: 1e300}\n", "", "budget.memory_mb", "must be <= 1099511627776"),
        ("    budget: {memory_mb: 1e-12}\n", "", "budget.memory_mb", "at least one byte"),
        ("    kernels_ms: [1e400]\n", "", "kernels_ms[0]", "finite number"),
        ("", "seed: 18446744073709551616\n", "seed", "must be <= 9223372036854775807"),
        ("", "duration_ms: 1e13\n", "duration_ms", "past the limit"),
        ("", "gpu: {memory_mb: .inf}\n", "gpu.memory_mb", "finite number, got inf"),
    ],
)  # fmt: skip
def test_numbers_out_of_range_name_task_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, task: str, top: str, field: str,
    fragment: str,
) -> None:  # fmt: skip
    base = "  - name: a\n    wcet_ms: 1\n" + ("" if "period_ms" in task else "    period_ms: 10\n")
    path = scenario(
        tmp_path, "name: demo\n" + (top or "duration_ms: 20\n") + "tasks:\n" + base + task
    )
    line = refused(capsys, tmp_path, path, "admit", "sim")[0]
    where = f"field '{field}'" if task == "" else f"task 'a': field '{field}'"
    assert where in line and fragment in line, line


@pytest.mark.parametrize("digits", [41, 400, 5000])
def test_huge_integer_literals_are_refused_while_reading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits: int
) -> None:
    path = scenario(tmp_path, TASKS + "  - name: a\n    wcet_ms: 1\n    period_ms: " + "9" * digits)
    line = refused(capsys, tmp_path, path, "admit")[0]
    assert f"at line 6, column 16: an integer of {digits} characters" in line
    assert len(line) < 200


# -------------------------------------------------------------------- 5. paths and file kinds

LONG = "x" * 5000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("profile", LONG),
        ("profile", "/dev/zero"),
        ("profile", "."),
        ("profile", "a/" * 3000 + "p.json"),
        ("model", LONG),
        ("model", "/dev/zero"),
        ("overheads", LONG),
        ("overheads", "/dev/zero"),
    ],
)
def test_named_files_are_read_safely(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, field: str, value: str
) -> None:
    top = f"overheads: {value}\n" if field == "overheads" else ""
    own = "" if field == "overheads" else f"    {field}: {value}\n"
    path = scenario(tmp_path, top + TASKS + TASK + own)
    line = refused(capsys, tmp_path, path, "admit")[0]
    assert f"field '{field}'" in line
    assert len(line) < 500  # the long path shown shortened
    if value == "/dev/zero":
        assert "cannot read a character device" in line
    elif value == ".":
        assert "cannot read a directory" in line
    else:
        assert "file name too long for the system" in line and "characters)" in line


@pytest.mark.parametrize(
    "make",
    ["/dev/zero", "/dev/null", "dir", "fifo", "socket", "long", "nul", "missing", "big"],
)
def test_the_scenario_file_itself_is_read_safely(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: str
) -> None:
    path = _special(tmp_path, make)
    line = refused(capsys, tmp_path, path)[0] if make != "nul" else None
    expected = {
        "/dev/zero": "cannot read a character device",
        "/dev/null": "cannot read a character device",
        "dir": "cannot read a directory",
        "fifo": "cannot read a FIFO",
        "socket": "cannot read a socket",
        "long": "file name too long",
        "missing": "no such scenario file",
        "big": f"larger than {MAX_YAML_BYTES >> 20} MiB",
    }
    if line is not None:
        assert expected[make] in line, line
    with pytest.raises(FileError):  # the reader every user file goes through
        read_user_bytes(path, "scenario", MAX_YAML_BYTES)


def _special(tmp_path: Path, make: str) -> Path:
    if make.startswith("/"):
        return Path(make)
    path = tmp_path / make
    if make == "dir":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)  # read it and the test would hang: it is refused before it is opened
    elif make == "socket":
        import socket

        if len(str(path)) > 100:  # AF_UNIX names hold 108 bytes
            pytest.skip("the temporary folder's path is too long for a socket")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif make == "long":
        path = tmp_path / ("a" * 5000)
    elif make == "nul":
        path = tmp_path / "a\0b"
    elif make == "big":
        with open(path, "wb") as f:
            f.truncate(MAX_YAML_BYTES + 1)  # sparse: nothing past the cap is read
    return path


def test_the_reader_maps_every_failure_to_a_file_error(tmp_path: Path) -> None:
    good = tmp_path / "ok.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good) == {"a": [1, 2]}
    assert user_file(good) == good
    assert read_user_text(good, limit=13) == '{"a": [1, 2]}'
    with pytest.raises(FileError, match="larger than 12 bytes"):
        read_user_text(good, limit=12)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe")
    with pytest.raises(FileError, match=r"not UTF-8 text \(line 2"):
        read_user_text(bad)
    big_int = tmp_path / "int.json"
    big_int.write_text("[" + "9" * 5000 + "]")
    with pytest.raises(FileError, match="invalid JSON"):
        read_json(big_int)
    with pytest.raises(FileError, match="not a valid file name"):
        user_file(tmp_path / "a\0b")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.json"
        locked.write_text("{}")
        locked.chmod(0)
        with pytest.raises(FileError, match="cannot read the file: Permission denied"):
            read_json(locked)


# ------------------------------------------------------------------- 6. control characters


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (TASKS + '  - name: "a\\nb"\n    period_ms: 10\n', "task 'a\\nb'"),
        (TASKS + '  - name: "a\\e[2J\\e[31mr"\n    period_ms: 10\n', "task 'a\\x1b[2J\\x1b[31mr'"),
        (TASKS + '  - name: "x\\u202eevil"\n    period_ms: 10\n', "task 'x\\u202eevil'"),
        (TASKS + '  - name: "a\\rforged"\n    period_ms: 10\n', "task 'a\\rforged'"),
        (TASKS + TASK + '    "wc\\net": 1\n', "field 'wc\\net'"),
        (TASKS + TASK + '    profile: "p\\n\\e[31m.json"\n', "p\\n\\x1b[31m.json"),
        ('name: "demo\\naegis: error: forged"\ntasks: [{name: a, period_ms: 1}]\n',
         "demo\\naegis: error: forged"),
        (TASKS + '  - name: "a\\ud800"\n    period_ms: 10\n', "task 'a\\ud800'"),
        (TASKS + TASK + '    profile: "\\ud800.json"\n', "\\ud800.json: not a valid file name"),
    ],
    ids=["newline-in-name", "escape-in-name", "bidi-in-name", "cr-in-name", "newline-in-key",
         "controls-in-path", "forged-line", "surrogate-in-name", "surrogate-in-path"],
)  # fmt: skip
def test_control_characters_are_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, shown: str
) -> None:
    for line in refused(capsys, tmp_path, scenario(tmp_path, text)):
        assert shown in line, line


def test_control_characters_in_the_file_name_are_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = scenario(tmp_path, TASKS + "  - name: a\n", "x\n\x1b[1m.yaml")
    for line in refused(capsys, tmp_path, path):
        assert "x\\n\\x1b[1m.yaml: task 'a': field 'period_ms': is required" in line
    missing = tmp_path / "gone\r\n.yaml"
    line = refused(capsys, tmp_path, missing, "admit")[0]
    assert "gone\\r\\n.yaml: no such scenario file" in line


def test_messages_are_made_safe_once_and_bounded() -> None:
    assert one_line("a\nb\x1b[0m\t\x85\u2028") == "a\\nb\\x1b[0m\\t\\x85\\u2028"
    assert one_line(one_line("a\nb")) == one_line("a\nb")  # idempotent: never doubled
    assert str(InputError("x\ny")) == "x\\ny"  # every AegisError's text is one line
    assert len(str(InputError("z" * 10**6))) == MAX_MESSAGE
    shared: list[object] = ["lol"] * 9
    for _ in range(30):  # 9**30 leaves if expanded
        shared = [shared] * 9
    assert len(quote(shared)) <= 60 and quote("a\nb") == "'a\\nb'"
    assert quote(10**5000).startswith("<int")  # past str()'s digit limit, still quoted
    assert len(show_path("d/" * 4000)) < 200
    e = ScenarioError("s\n.yaml", "bad", task="t" * 500, field="f\x1b")
    assert str(e).startswith("s\\n.yaml: task 'ttt") and "field 'f\\x1b': bad" in str(e)
    assert len(str(e)) < 200


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("samples_ns", 1 << 70, "field 'samples_ns[3]': must be an integer > 0 and <= "),
        ("wcet_ns", (1 << 62) + 1, "field 'wcet_ns': must be an integer > 0 and <= "),
        ("pwcet_ns", {"1e-03": 10**30}, "field 'pwcet_ns.1e-03': must be an integer > 0"),
    ],
)
def test_profile_times_past_the_limit_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str, value: object, shown: str
) -> None:
    """A profile the scenario names feeds the run's times: they fit 2**62 ns as well."""
    from aegis_core.run.testing import make_profile

    data = make_profile([900_000 + 1000 * i for i in range(20)], task="a").as_dict()
    if key == "samples_ns":
        data[key][3] = value
    elif isinstance(value, dict):
        data[key] = {**data[key], **value}
    else:
        data[key] = value
    (tmp_path / "p.json").write_text(json.dumps(data))
    path = scenario(tmp_path, TASKS + "  - name: a\n    period_ms: 10\n    profile: p.json\n")
    line = refused(capsys, tmp_path, path, "admit", "sim")[0]
    assert "task 'a': field 'profile': " in line and shown in line, line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("name: 2026-13-45\ntasks: [1]\n", "line 1, column 7: cannot read the value '2026-13-45'"),
        ("name: a\ntasks: [{period_ms: !!float ten}]", "column 21: cannot read the value 'ten'"),
        (
            "name: a\ntasks: [{period_ms: !!int 0x}]",
            "column 21: write integers in decimal, got '0x'",
        ),
        ("name: !!python/name:os.system x\n", "could not determine a constructor for the tag"),
        ("name: a\n---\nname: b\n", "expected a single document"),
    ],
    ids=["bad-date", "bad-float", "bad-int", "python-tag", "two-documents"],
)
def test_values_yaml_cannot_build_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, shown: str
) -> None:
    for line in refused(capsys, tmp_path, scenario(tmp_path, text), "admit"):
        assert "invalid YAML at line" in line and shown in line, line


@pytest.mark.parametrize("literal", ["1:30", "010", "0x10", "1_0", "0b11", "-1:00"])
def test_integers_are_decimal_only(
    literal: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML 1.1 reads ``1:30`` as 90, ``010`` as 8, ``0x10`` as 16: a scenario refuses them
    (a period silently 90 ms is worse than an error)."""
    from aegis_core.tools.cli import main

    f = tmp_path / "s.yaml"
    f.write_text(f"name: s\ntasks:\n  - name: a\n    period_ms: {literal}\n    wcet_ms: 1\n")
    assert main(["admit", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "write integers in decimal" in err[0] and literal in err[0]
