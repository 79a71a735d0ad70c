"""Scenario files (docs/CONTRACTS.md §scenario): YAML in, frozen dataclasses out, integer ns.

Every bad input raises :class:`~aegis_core.model.errors.ScenarioError` naming the file, the task and
the field; unknown keys are errors so that typos never pass silently.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from aegis_core.model.errors import FileError, InputError, ScenarioError, quote, shorten, show_path
from aegis_core.model.files import MAX_YAML_BYTES, is_int, read_user_bytes, user_file
from aegis_core.model.overheads import Overheads, load_overheads
from aegis_core.model.policy import DEFAULT, POLICIES, Policy
from aegis_core.model.profile import Profile, load_profile
from aegis_core.model.types import BYTES_PER_MIB, MAX_TIME_NS, MAX_TIME_TEXT, TimeNs, ms_to_ns

BYTES_PER_MB = BYTES_PER_MIB
"""``memory_mb`` counts MiB."""

MAX_INT64 = (1 << 63) - 1
"""The largest integer field (``seed``, ``priority``): records and NumPy keep them in int64."""

MAX_BATCH = 1 << 16
"""The largest ``batch`` of a builtin model."""

MAX_INPUT_ELEMENTS = 1 << 32
"""The most elements one job's input may hold (``batch`` times the ``input_shape``)."""

_MAX_DIMS = 8

MAX_MEMORY_MB = 1 << 40
"""The largest ``memory_mb`` (1 EiB): its byte count fits int64."""

MAX_NAME = 128
"""The longest scenario or task name (names become file and folder names)."""

BUILTIN_MODELS = frozenset({"resnet18", "mobilenet_v2", "bert_tiny", "mlp", "tiny_cnn"})
"""Names of the builtin model graphs (the zoo lands with the executor)."""

_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
_TASK_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
"""Task names become job ids ``<task>#<k>``, CSV fields and file names: no '#', ',' or space."""


class OnOverrun(StrEnum):
    CONTINUE = "continue"
    SKIP_NEXT = "skip-next"


class Arrival(StrEnum):
    PERIODIC = "periodic"
    SPORADIC = "sporadic"
    POISSON = "poisson"


@dataclass(frozen=True, slots=True)
class Task:
    """One model with its timing contract. All times in integer ns."""

    name: str
    period_ns: TimeNs
    deadline_ns: TimeNs
    wcet_ns: TimeNs | None = None
    """The declared ``wcet_ms`` (None: not given). The WCET a run uses is decided from this,
    the profile and the kernels by :func:`aegis_core.budget.task_budget`."""
    model: str | None = None
    batch: int = 1
    input_shape: tuple[int, ...] | None = None
    """Per-sample input shape of the model (default: the model's own, e.g. 3x224x224; an
    ONNX model's dynamic dimensions need it)."""
    profile: str | None = None
    arrival: Arrival = Arrival.PERIODIC
    slack_ns: TimeNs = 0
    offset_ns: TimeNs = 0
    jitter_ns: TimeNs = 0
    priority: int | None = None
    memory_budget_bytes: int | None = None
    kernels_ns: tuple[int, ...] | None = None
    """The declared ``kernels_ms``: the job's kernel (operator group) WCET chain, whose
    boundaries are the preemption points of a chunked policy (lp-edf)."""
    on_overrun: str = "continue"
    """A job past its WCET (the time budget): ``continue``, or ``skip-next`` (drop the task's
    next job so the others keep their time)."""
    measured: Profile | None = field(default=None, compare=False, repr=False)
    """The profile at ``profile`` (its WCET and the samples the simulator replays)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    tasks: tuple[Task, ...]
    policy: Policy = DEFAULT
    duration_ns: TimeNs = 1_000 * 1_000_000
    seed: int = 0
    gpu_memory_bytes: int | None = None
    path: str = "<memory>"
    source_sha256: str = ""
    overheads: Overheads | None = None
    """The host overheads the analysis charges (``overheads:`` or ``--overheads``; None:
    an ideal host)."""
    analysis_points: int | None = None
    """The admission analysis budget in points (``analysis_points:`` or ``--max-points``;
    None: the default, docs/THEORY.md §budget)."""

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)


# ----------------------------------------------------------------------------- validation


class _Fields:
    """Reads typed fields from one mapping, raising ScenarioError with full context."""

    def __init__(self, path: str, data: Mapping[str, Any], task: str | None, prefix: str = ""):
        self.path, self.data, self.task, self.prefix = path, data, task, prefix

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(self.path, message, task=self.task, field=self.prefix + key)

    def check_keys(self, allowed: frozenset[str], required: tuple[str, ...] = ()) -> None:
        for key in self.data:
            if key not in allowed:
                hint = _closest(str(key), allowed)
                extra = f" (did you mean '{hint}'?)" if hint else ""
                raise self.fail(
                    str(key), f"unknown key{extra}; allowed: {', '.join(sorted(allowed))}"
                )
        for key in required:
            if key not in self.data or self.data[key] is None:
                raise self.fail(key, "is required")

    def number(self, key: str, *, minimum: float = 0.0, strict: bool = True) -> float | int | None:
        """A finite number; ``> minimum`` when strict, else ``>= minimum``; None when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise self.fail(key, f"must be a finite number, got {quote(value)}")
        if (strict and value <= minimum) or (not strict and value < minimum):
            op = ">" if strict else ">="
            raise self.fail(key, f"must be {op} {minimum:g}, got {quote(value)}")
        return value

    def ms(self, key: str, *, strict: bool = True) -> TimeNs | None:
        """A time in ms as integer ns, at most :data:`MAX_TIME_NS`; None when absent."""
        value = self.number(key, strict=strict)
        if value is None:
            return None
        ns = ms_to_ns(value)
        if ns > MAX_TIME_NS:
            raise self.fail(key, f"{quote(value)} ms is past the limit of {MAX_TIME_TEXT}")
        return ns

    def integer(
        self, key: str, *, minimum: int | None = None, maximum: int = MAX_INT64
    ) -> int | None:
        """An integer in ``[minimum, maximum]`` (default: int64's range); None when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {quote(value)}")
        least = -MAX_INT64 - 1 if minimum is None else minimum
        if value < least:
            raise self.fail(key, f"must be >= {least}, got {quote(value)}")
        if value > maximum:
            raise self.fail(key, f"must be <= {maximum}, got {quote(value)}")
        return value

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {quote(value)}")
        return value

    def choice(self, key: str, enum: type[StrEnum], default: StrEnum) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise self.fail(key, f"must be one of {allowed}, got {quote(value)}") from None

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, got {quote(value)}")
        return value


def _closest(word: str, options: frozenset[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return found[0] if found else None


_TOP_KEYS = frozenset(
    {"name", "policy", "duration_ms", "seed", "gpu", "tasks", "overheads", "analysis_points"}
)
_TASK_KEYS = frozenset(
    {
        "name", "model", "batch", "period_ms", "deadline_ms", "wcet_ms", "profile", "arrival",
        "slack_ms", "offset_ms", "jitter_ms", "priority", "budget", "kernels_ms", "input_shape",
        "on_overrun",
    }
)  # fmt: skip
_MEMORY_KEYS = frozenset({"memory_mb"})


def _memory_bytes(f: _Fields, key: str) -> int | None:
    section = f.mapping(key)
    if section is None:
        return None
    sub = _Fields(f.path, section, f.task, prefix=f"{key}.")
    sub.check_keys(_MEMORY_KEYS)
    mb = sub.number("memory_mb")
    if mb is None:
        return None
    if mb > MAX_MEMORY_MB:
        raise sub.fail("memory_mb", f"must be <= {MAX_MEMORY_MB} (1 EiB), got {quote(mb)}")
    count = round(mb * BYTES_PER_MB)
    if count < 1:
        raise sub.fail("memory_mb", f"must be at least one byte, got {quote(mb)}")
    return count


def _kernels(f: _Fields) -> tuple[int, ...] | None:
    value = f.data.get("kernels_ms")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise f.fail(
            "kernels_ms", f"must be a non-empty list of kernel WCETs in ms, got {quote(value)}"
        )
    out = []
    for k, v in enumerate(value):
        item = _Fields(f.path, {f"kernels_ms[{k}]": v}, f.task)
        ns = item.ms(f"kernels_ms[{k}]")
        if ns is None or ns <= 0:
            raise item.fail(f"kernels_ms[{k}]", "must be > 0 after conversion to ns")
        out.append(ns)
    if sum(out) > MAX_TIME_NS:
        raise f.fail(
            "kernels_ms", f"kernels sum to {sum(out)} ns, past the limit of {MAX_TIME_TEXT}"
        )
    return tuple(out)


def _input_shape(f: _Fields, batch: int) -> tuple[int, ...] | None:
    value = f.data.get("input_shape")
    if value is None:
        return None
    ok = (
        isinstance(value, list)
        and 0 < len(value) <= _MAX_DIMS
        and all(is_int(v) and 0 < v <= MAX_INPUT_ELEMENTS for v in value)
    )
    if not ok:
        raise f.fail("input_shape", f"must be a list of positive integers (at most "
                     f"{_MAX_DIMS}), got {quote(value)}")  # fmt: skip
    elements = batch * math.prod(value)
    if elements > MAX_INPUT_ELEMENTS:
        raise f.fail("input_shape", f"batch x input_shape is {elements} elements, past the "
                     f"limit of {MAX_INPUT_ELEMENTS} (2**32)")  # fmt: skip
    return tuple(value)


def _checked_shape(f: _Fields, model: str | None, batch: int) -> tuple[int, ...] | None:
    """The task's input shape, checked against its builtin model (builds the graph once)."""
    shape = _input_shape(f, batch)
    if shape is None:
        return None
    if model is None:
        raise f.fail("input_shape", "needs a model (the shape of which model's input?)")
    from aegis_core.graph.weights import is_onnx
    from aegis_core.graph.zoo import build_model

    if is_onnx(model):
        return shape  # checked against the model when it is imported (graph.zoo.check_models)
    if model not in BUILTIN_MODELS:
        raise f.fail("input_shape", "a graph file fixes its own input shape: leave this out")

    try:
        build_model(model, batch, shape)
    except InputError as exc:
        raise f.fail("input_shape", str(exc)) from exc
    return shape


def _model(f: _Fields, base: Path) -> str | None:
    """A builtin name, or the path of a graph file or ONNX model (``*.onnx``), relative to
    the scenario's folder."""
    model = f.string("model")
    if model is None or model in BUILTIN_MODELS:
        return model
    from aegis_core.graph.weights import is_onnx

    what = "ONNX model" if is_onnx(model) else "graph file"
    candidate = Path(model) if Path(model).is_absolute() else base / model
    try:
        return str(user_file(candidate, what))
    except FileError as exc:
        if exc.reason != f"no such {what}":
            raise f.fail("model", str(exc)) from None
    raise f.fail(
        "model",
        f"unknown model {quote(model)}: not a builtin ({', '.join(sorted(BUILTIN_MODELS))}) "
        f"and no {what} at {show_path(candidate)}",
    )


def _profile(f: _Fields, base: Path) -> Profile | None:
    return _file(f, "profile", base, "no profile file at {}", load_profile)


_Loaded = TypeVar("_Loaded")


def _file(f: _Fields, key: str, base: Path, missing: str,
          load: Callable[[Path], _Loaded]) -> _Loaded | None:  # fmt: skip
    """The file named by field ``key`` (relative to ``base``), loaded; its errors name the
    field (``missing``: the message for no such file, ``{}`` the path)."""
    given = f.string(key)
    if given is None:
        return None
    candidate = Path(given) if Path(given).is_absolute() else base / given
    try:
        return load(user_file(candidate, f"{key} file"))
    except FileError as exc:
        if exc.reason.startswith("no such"):
            raise f.fail(key, missing.format(show_path(candidate))) from None
        raise f.fail(key, str(exc)) from None
    except InputError as exc:
        raise f.fail(key, str(exc)) from None


def _profile_matches(
    f: _Fields, prof: Profile, model: str | None, batch: int, shape: tuple[int, ...] | None
) -> None:
    """A profile measured another model (or batch) than the task runs: never a silent WCET."""
    if model is None or prof.model is None:
        return
    if Path(model).name != Path(prof.model).name:
        raise f.fail(
            "profile",
            f"the profile measured model {quote(prof.model)}, the task runs {quote(model)}",
        )
    if prof.batch != batch:
        raise f.fail("profile", f"the profile measured batch {prof.batch}, the task runs {batch}")
    from aegis_core.graph.zoo import MODELS

    default = MODELS.get(Path(model).name)
    theirs = tuple(prof.input_shape) if prof.input_shape else default
    ours = tuple(shape) if shape else default
    if theirs != ours:
        raise f.fail(
            "profile",
            f"the profile measured input shape {list(theirs or ())}, the task runs "
            f"{list(ours or ())}",
        )


def _check_declared_wcet(
    f: _Fields, wcet: TimeNs | None, kernels: tuple[int, ...] | None, deadline: TimeNs,
    *, profiled: bool,
) -> None:  # fmt: skip
    """What the file itself declares must be consistent: ``kernels_ms`` sum to a declared
    ``wcet_ms``, and neither exceeds the deadline (kernels alone only when no profile gives
    the WCET: a profile's measured WCET is no input error; admission rejects a task whose
    WCET exceeds its deadline, whichever way the profile came)."""
    if wcet is not None and wcet <= 0:
        raise f.fail("wcet_ms", "must be > 0 after conversion to ns")
    if kernels is not None and wcet is not None and sum(kernels) != wcet:
        raise f.fail("kernels_ms", f"kernels sum to {sum(kernels)} ns, wcet_ms is {wcet} ns")
    declared, where = (wcet, "wcet_ms") if wcet is not None else (None, "kernels_ms")
    if declared is None and kernels is not None and not profiled:
        declared = sum(kernels)
    if declared is not None and declared > deadline:
        raise f.fail(
            where, f"WCET {declared} ns exceeds the relative deadline {deadline} ns: never feasible"
        )


def _policy(f: _Fields) -> Policy:
    """``policy:`` validated against the policy registry."""
    name = f.data.get("policy")
    if name is None:
        return DEFAULT
    if not isinstance(name, str) or name not in POLICIES:
        raise f.fail("policy", f"must be one of {', '.join(POLICIES)}, got {quote(name)}")
    return POLICIES[name]


def _task(path: str, index: int, raw: Any, base: Path) -> Task:
    from aegis_core.graph.weights import is_onnx

    if not isinstance(raw, Mapping):
        raise ScenarioError(path, f"must be a mapping, got {quote(raw)}", task=f"#{index}")
    label = raw.get("name") if isinstance(raw.get("name"), str) and raw.get("name") else None
    f = _Fields(path, raw, label or f"#{index}")
    f.check_keys(_TASK_KEYS, required=("name", "period_ms"))
    name = f.string("name")
    assert name is not None
    if not _TASK_NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise f.fail("name", f"must match [A-Za-z0-9_.-]+, at most {MAX_NAME} characters (it "
                     f"names jobs '<task>#<k>'), got {quote(name)}")  # fmt: skip
    period = f.ms("period_ms")
    assert period is not None
    deadline = f.ms("deadline_ms")
    deadline = period if deadline is None else deadline
    if period <= 0:
        raise f.fail("period_ms", "must be > 0 after conversion to ns")
    if deadline <= 0:
        raise f.fail("deadline_ms", "must be > 0 after conversion to ns")
    wcet = f.ms("wcet_ms")
    prof = _profile(f, base)
    kernels = _kernels(f)
    _check_declared_wcet(f, wcet, kernels, deadline, profiled=prof is not None)
    arrival = f.choice("arrival", Arrival, Arrival.PERIODIC)
    slack = f.ms("slack_ms", strict=False)
    jitter = f.ms("jitter_ms", strict=False) or 0
    if jitter >= period:
        raise f.fail("jitter_ms", f"must be below the period ({period} ns), got {jitter} ns")
    batch = f.integer("batch", minimum=1, maximum=MAX_BATCH)
    model = _model(f, base)
    fixed = model is not None and model not in BUILTIN_MODELS and not is_onnx(model)
    if batch is not None and fixed:
        raise f.fail("batch", "a graph file fixes its own batch: leave this out")
    shape = _checked_shape(f, model, 1 if batch is None else batch)
    if prof is not None:
        _profile_matches(f, prof, model, 1 if batch is None else batch, shape)
    return Task(
        name=name,
        period_ns=period,
        deadline_ns=deadline,
        wcet_ns=wcet,
        model=model,
        batch=1 if batch is None else batch,
        input_shape=shape,
        profile=prof.path if prof is not None else None,
        measured=prof,
        arrival=arrival,
        slack_ns=period // 2 if slack is None else slack,
        offset_ns=f.ms("offset_ms", strict=False) or 0,
        jitter_ns=jitter,
        priority=f.integer("priority"),
        memory_budget_bytes=_memory_bytes(f, "budget"),
        kernels_ns=kernels,
        on_overrun=f.choice("on_overrun", OnOverrun, OnOverrun.CONTINUE).value,
    )


def parse_scenario(data: Any, path: str = "<memory>", *, source: bytes = b"") -> Scenario:
    """Validate an already-parsed YAML document. Relative paths resolve against ``path``."""
    if not isinstance(data, Mapping):
        raise ScenarioError(path, "the document must be a mapping with 'name' and 'tasks'")
    f = _Fields(path, data, None)
    f.check_keys(_TOP_KEYS, required=("name", "tasks"))
    name = f.string("name")
    assert name is not None
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise f.fail("name", f"must match [a-z0-9_-]+, at most {MAX_NAME} characters, got "
                     f"{quote(name)}")  # fmt: skip
    raw_tasks = data["tasks"]
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise f.fail("tasks", "must be a non-empty list of tasks")
    base = Path(path).parent if path != "<memory>" else Path.cwd()
    tasks = tuple(_task(path, i, raw, base) for i, raw in enumerate(raw_tasks))
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise ScenarioError(path, "duplicate task name", task=t.name, field="name")
        seen.add(t.name)
    duration = f.ms("duration_ms")
    if duration is not None and duration <= 0:
        raise f.fail("duration_ms", "must be > 0 after conversion to ns")
    seed = f.integer("seed", minimum=0)
    return check_times(
        Scenario(
            name=name,
            tasks=tasks,
            policy=_policy(f),
            duration_ns=1_000 * 1_000_000 if duration is None else duration,
            seed=0 if seed is None else seed,
            gpu_memory_bytes=_memory_bytes(f, "gpu"),
            path=path,
            source_sha256=hashlib.sha256(source).hexdigest() if source else "",
            overheads=_overheads(f, base),
            analysis_points=f.integer("analysis_points", minimum=1),
        )
    )


def _overheads(f: _Fields, base: Path) -> Overheads | None:
    """``overheads: FILE`` (relative to the scenario): the calibrated host overheads."""
    return _file(f, "overheads", base, "no overheads file at {} (aegis calibrate writes one)",
                 load_overheads)  # fmt: skip


MAX_YAML_DEPTH = 32
"""The deepest nesting of lists and mappings a scenario may have (it needs 4)."""

MAX_YAML_NODES = 50_000
"""The most values (scalars, lists, mappings) a scenario may hold, aliases counted at the full
size of what they repeat: pure-Python PyYAML composes some 50 000 a second, and a file of a
hundred tasks of 500 kernels each holds as many."""

MAX_ALIAS_NODES = 10_000
"""The most values YAML aliases may add to a scenario, each alias counted at the full size
of the value it repeats (so a "billion laughs" file is refused while it is read)."""

_MAX_INT_DIGITS = 40
"""An integer literal longer than this is refused as it is read (no field takes one)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter: a key written twice in one mapping is an error (the
    second would silently win, hiding a typo), and ``1e3`` reads as a float, as in YAML 1.2.
    Bounded: nesting at most :data:`MAX_YAML_DEPTH` deep, at most :data:`MAX_YAML_NODES`
    values of which aliases add at most :data:`MAX_ALIAS_NODES`, keys single values,
    integers at most 40 digits."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._depth = 0
        self._count = 0  # values composed, each alias counted at its anchor's full size
        self._aliased = 0  # of which aliases added
        self._sizes: dict[int, int] = {}  # id(node) -> its size, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)  # an undefined alias fails here
            size = self._sizes.get(id(node))
            if size is None:
                raise self._refuse("an alias inside the value it names (a recursive value)", mark)
            self._aliased += size
            if self._aliased > MAX_ALIAS_NODES:
                raise self._refuse(f"aliases repeat more than {MAX_ALIAS_NODES} values", mark)
            self._counted(size, mark)
            return node
        if self._depth >= MAX_YAML_DEPTH:
            raise self._refuse(f"nested more than {MAX_YAML_DEPTH} levels deep", mark)
        before = self._count
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._counted(1, mark)
        self._sizes[id(node)] = self._count - before
        return node

    def _counted(self, values: int, mark: Any) -> None:
        self._count += values
        if self._count > MAX_YAML_NODES:
            raise self._refuse(f"more than {MAX_YAML_NODES} values in the document", mark)

    def fetch_flow_collection_start(self, token: Any) -> None:
        """A ``[`` or ``{``: refused past the depth cap here already, as the scanner looks
        ahead over a whole flow collection (quadratic in its depth) before composing it."""
        if self.flow_level >= MAX_YAML_DEPTH:
            raise self._refuse(f"nested more than {MAX_YAML_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(token)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date 2026-13-45
            shown = quote(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
            raise self._refuse(f"cannot read the value {shown}: {exc}", node.start_mark) from None

    @staticmethod
    def _refuse(problem: str, mark: Any) -> yaml.MarkedYAMLError:
        return yaml.composer.ComposerError(None, None, problem, mark)


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """The mapping; a key written twice in it is an error (keys merged in with ``<<: *x``
    are not its own: its own override them)."""
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a single value, not a {kind}", key_node.start_mark
            )
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {quote(key)}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return loader.construct_mapping(node)


def _bounded_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    if len(node.value) > _MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"an integer of {len(node.value)} characters: too large for any field",
            node.start_mark,
        )
    if not _DECIMAL.fullmatch(node.value):  # YAML 1.1 reads 1:30 as 90, 010 as 8, 0x10 as 16
        raise yaml.constructor.ConstructorError(
            None, None, f"write integers in decimal, got {quote(node.value)}", node.start_mark
        )
    return int(loader.construct_yaml_int(node))


_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
"""The integers a scenario may write: decimal, no leading zero, no ``_`` (YAML 1.1 would read
sexagesimal, octal, hex and binary literals silently)."""


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _reader_error_line(source: bytes, exc: yaml.reader.ReaderError) -> int:
    """1-based line of a ReaderError (it carries no mark): ``position`` counts bytes for a
    decoding error, decoded characters for a non-printable character."""
    if exc.encoding != "unicode":
        return source[: exc.position].count(b"\n") + 1
    codec = {codecs.BOM_UTF16_LE: "utf-16-le", codecs.BOM_UTF16_BE: "utf-16-be"}
    text = source.decode(codec.get(source[:2], "utf-8"), errors="replace")
    return text[: exc.position].count("\n") + 1


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = str(path)
    data, source = read_yaml(p, "scenario file")
    return parse_scenario(data, p, source=source)


def read_yaml(path: str, what: str) -> tuple[Any, bytes]:
    """The YAML document of the user's file ``path`` and its bytes, read as every YAML input
    is (at most :data:`MAX_YAML_BYTES`, the bounded strict loader); a ScenarioError naming the
    file (its ``reason`` the problem alone, for a caller that wraps it)."""
    p = path
    try:
        source = read_user_bytes(p, what, MAX_YAML_BYTES)
    except FileError as exc:
        raise ScenarioError(p, exc.reason) from None
    try:
        data = yaml.load(source, Loader=_StrictLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):  # a bad byte: no mark, multi-line str()
            where = f" at line {_reader_error_line(source, exc)}"
            problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        else:
            problem = getattr(exc, "problem", None) or str(exc)
            context = getattr(exc, "context", None)
            if context and problem.startswith("but "):  # "expected ..., but found ..."
                problem = f"{context}, {problem}"
        raise ScenarioError(p, f"invalid YAML{where}: {shorten(problem, 200)}") from None
    return data, source


def replace_scenario(scenario: Scenario, **changes: Any) -> Scenario:
    """A copy with some top-level fields changed (``--seed``, ``--duration-ms``), its times
    checked again (:func:`check_times`)."""
    import dataclasses

    return check_times(dataclasses.replace(scenario, **changes))


def time_span(scenario: Scenario, task: Task) -> list[tuple[str, TimeNs]]:
    """The times whose sum bounds what the run plans for ``task``: its releases come before
    the duration, the arrival generator steps one gap (period, plus slack if sporadic or
    poisson) past the last one, a release is delayed by up to the jitter and its deadline
    counts from there. Field name and value, in ns."""
    parts = [("duration_ms", scenario.duration_ns), ("period_ms", task.period_ns)]
    if task.arrival is not Arrival.PERIODIC:
        parts.append(("slack_ms", task.slack_ns))
    parts += [("jitter_ms", task.jitter_ns), ("deadline_ms", task.deadline_ns)]
    return parts


def check_times(scenario: Scenario) -> Scenario:
    """``scenario`` if every time the run plans fits int64 (docs/CONTRACTS.md §scenario): the
    duration, and each task's :func:`time_span` summed, are at most :data:`MAX_TIME_NS`
    (each time field of a file is checked as it is read). Else a ScenarioError naming the
    task and the field (of a sum, its largest term)."""
    if scenario.duration_ns > MAX_TIME_NS:
        raise ScenarioError(scenario.path, f"{quote(scenario.duration_ns)} ns is past the limit of "
                            f"{MAX_TIME_TEXT}", field="duration_ms")  # fmt: skip
    for t in scenario.tasks:
        span = time_span(scenario, t)
        total = sum(ns for _, ns in span)
        if total > MAX_TIME_NS:
            largest = max(span, key=lambda kv: kv[1])[0]
            terms = " + ".join(k for k, _ in span)
            raise ScenarioError(
                scenario.path,
                f"{terms} reach {quote(total)} ns, past the limit of {MAX_TIME_TEXT}",
                task=t.name,
                field=largest,
            )
    return scenario


def with_profiles(scenario: Scenario, directory: str | Path) -> Scenario:
    """``--profiles DIR``: each task with a ``DIR/<task>.json`` takes that profile in place of
    its own timing (its ``wcet_ms`` and ``profile``; its kernels stay, as its preemption
    points); the others are left as they are."""
    import dataclasses

    folder = Path(directory)
    if not os.path.isdir(folder):  # False, not an OSError, for a name too long
        raise InputError(
            f"--profiles {show_path(folder)}: no such directory (aegis profile writes one)"
        )
    tasks, found = [], 0
    for t in scenario.tasks:
        path = folder / f"{t.name}.json"
        if not os.path.isfile(path):
            tasks.append(t)
            continue
        found += 1
        f = _Fields(scenario.path, {"profile": str(path)}, t.name)
        prof = _profile(f, Path.cwd())
        assert prof is not None
        _profile_matches(f, prof, t.model, t.batch, t.input_shape)
        tasks.append(dataclasses.replace(t, wcet_ns=None, profile=str(path), measured=prof))
    if not found:
        names = ", ".join(f"{t.name}.json" for t in scenario.tasks)
        raise InputError(
            f"--profiles {show_path(folder)}: no profile for any task (looked for {names})"
        )
    return dataclasses.replace(scenario, tasks=tuple(tasks))
