"""The one exception tree of AegisRT.

::

    AegisError                      base of everything AegisRT raises on purpose
    ├── InputError                  bad user input; the CLI prints it and exits 2
    │   └── ScenarioError           a scenario file: names file, task and field
    ├── EngineError                 an engine could not run a plan
    │   ├── EngineNotFound          no engine registered under that name
    │   ├── BackendError            a compute backend failed (CUDA errors are
    │   │                           translated into this at the backend seam)
    │   └── JobFault                one job's kernels failed at launch; the
    │                               executor turns it into that job's `fault`
    └── InternalError               an invariant of the core broke (a bug)

    Interrupted (a BaseException)   a stop request (SIGINT, SIGTERM) cut a wait of the
                                    run short; the loop catches it and ends the run there
                                    (aegis_core.run.stop)

Deadline misses, rejections and job faults are *not* exceptions: they are job
statuses and trace records.
"""

from __future__ import annotations


class AegisError(Exception):
    """Base class of every error AegisRT raises on purpose."""


class InputError(AegisError):
    """Bad input from the user (file, flag, value). The CLI exits with status 2."""

    exit_code = 2


class ScenarioError(InputError):
    """A scenario file is invalid. The message names the file, the task and the field."""

    def __init__(
        self, path: str, message: str, *, task: str | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.task = task
        self.field = field
        self.reason = message
        where = [path]
        if task is not None:
            where.append(f"task '{task}'")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join([*where, message]))


class EngineError(AegisError):
    """An engine could not execute a run plan."""


class EngineNotFound(EngineError, InputError):
    """No engine is registered under the requested name (entry-point group ``aegis.engines``)."""


class BackendError(EngineError):
    """A compute backend failed; backend-specific errors are translated into this."""


class JobFault(EngineError):
    """One job's kernels raised. Never escapes a run: the executor records that job as failed
    (a ``fault`` trace record, charged to its task's execution context); every other job,
    of its task or another, runs as usual."""


class InternalError(AegisError):
    """An invariant of the core was violated: a bug in AegisRT, never the user's fault."""


class Interrupted(BaseException):
    """A stop request ended a blocking wait of a run (:mod:`aegis_core.run.stop`). A
    BaseException, as KeyboardInterrupt is: no ``except Exception`` of an engine or a backend
    swallows it; the loop catches it and ends the run at the instant it was waiting after."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
