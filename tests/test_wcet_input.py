"""``aegis wcet FILE`` on hostile durations files: overflowing values, other units (warned on
stderr), standard input, non-regular files (docs/CONTRACTS.md §wcet)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from aegis_core.analysis import pwcet
from aegis_core.tools.cli import main

GOOD = [1_000_000 + 1_000 * (i % 17) for i in range(100)]


def _file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "d.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("9" * 400, "line 101: " + "9" * 59 + "… ns is past the limit"),  # shortened
        ("1e400", "line 101: 1e400 ns is past the limit"),
        ("-1e400", "a duration must be a finite number > 0 ns, got '-1e400'"),
        ("4611686018427387905", "ns is past the limit of 2**62 ns"),
        ("9e18", "line 101: 9e18 ns is past the limit"),
        ("-3", "a duration must be a finite number > 0 ns, got '-3'"),
        ("nan", "got 'nan'"),
        ("inf", "got 'inf'"),
        ("0", "got '0'"),
        ("12\x1b[2J", r"not a number: '12\x1b[2J'"),
    ],
)
def test_values_that_overflow_or_are_no_duration_exit_2_naming_the_line(
    bad: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, ["wcet", str(_file(tmp_path, [*map(str, GOOD), bad]))])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ([f"{1.2 + i / 1000:.3f}" for i in range(100)], "every value is below 1000"),
        ([str(200 + i) for i in range(100)], "every value is below 1000"),
        ([f"{1_000_000 + i}.5" for i in range(100)], "values have fractions"),
    ],
)
def test_values_in_another_unit_are_warned_on_stderr(
    values: list[str], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, values)
    code, out, err = _run(capsys, ["wcet", str(path), "--json"])
    assert code == 0 and json.loads(out)["n"] == 100
    assert err == f"aegis: warning: {path}: {why}" + err.split(why, 1)[1]
    assert "the file is read as ns" in err and err.count("\n") == 1


def test_whole_ns_values_give_no_unit_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, ["wcet", str(_file(tmp_path, [*map(str, GOOD), "2e6"]))])
    assert code == 0 and err == ""
    assert pwcet.unit_warning(pwcet.as_samples([float(v) for v in GOOD])) is None


def test_dash_reads_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = "\n".join(map(str, GOOD)) + "\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, out, err = _run(capsys, ["wcet", "-", "--json"])
    assert code == 0 and err == ""
    from_file = _run(capsys, ["wcet", str(_file(tmp_path, list(map(str, GOOD)))), "--json"])[1]
    assert json.loads(out) == json.loads(from_file)


def test_non_regular_and_oversized_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, _, err = _run(capsys, ["wcet", str(fifo)])
    assert code == 2 and "not a regular file" in err
    if Path("/dev/zero").exists():
        code, _, err = _run(capsys, ["wcet", "/dev/zero"])
        assert code == 2 and "/dev/zero: cannot read a character device" in err
    monkeypatch.setattr(pwcet, "SAMPLES_FILE_LIMIT", 50)
    code, _, err = _run(capsys, ["wcet", str(_file(tmp_path, list(map(str, GOOD))))])
    assert code == 2 and "larger than 50 bytes" in err
    (tmp_path / "bin").write_bytes(b"\xff\xfe" * 10)
    code, _, err = _run(capsys, ["wcet", str(tmp_path / "bin")])
    assert code == 2 and "not UTF-8 text" in err


def test_python_number_spellings_are_no_durations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``1_000_000`` is a Python literal, not a number of a durations file."""
    code, _, err = _run(capsys, ["wcet", str(_file(tmp_path, [*map(str, GOOD), "1_000_000"]))])
    assert code == 2 and "line 101: not a number: '1_000_000'" in err
