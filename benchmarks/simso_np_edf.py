"""SimSo 0.8.5 anchor: wall time to simulate non-preemptive EDF (NP-EDF).

Task set, one processor, implicit deadlines (D = T), periodic, synchronous
release at t = 0, U = 0.8:  (C, T) ms = (2,10) (4,20) (5,25) (7,50) (6,100).

SimSo ships no NP-EDF, so ``NPEDF`` below is a minimal one written like
simso.schedulers.EDF_mono: dispatch only when the processor is idle, pick the
ready job with the earliest absolute deadline (ties: lowest task id), never
preempt.  Times are whole ms and 1 cycle = 1 us, so every date is an exact
integer.  The horizon is [0, duration): SimPy runs events at t == until, so
``until`` is set one cycle short to keep releases at t = duration out.

Timed (time.perf_counter, per repeat): Configuration + Model build +
model.run_model() (which includes SimSo's own Results analysis); the previous
model is freed with gc.collect() between repeats.  Checked afterwards,
untimed: deadline misses (must be 0) and that no job ever resumed after
another job ran (true non-preemption).

Run: .venv-simso/bin/python benchmarks/simso_np_edf.py [--duration-s 100] [--repeat 3]
(create the venv with benchmarks/setup_simso.sh).  Last stdout line is JSON.
"""

import argparse
import gc
import json
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)  # simso imports `imp`

import simso  # noqa: E402
from simso.configuration import Configuration  # noqa: E402
from simso.core import Model, Scheduler  # noqa: E402
from simso.core.JobEvent import JobEvent  # noqa: E402

TASKS = [(2, 10), (4, 20), (5, 25), (7, 50), (6, 100)]  # (C, T) in ms
CYCLES_PER_MS = 1000


class NPEDF(Scheduler):
    """Uniprocessor non-preemptive EDF."""

    def init(self):
        self.ready_list = []

    def on_activate(self, job):
        self.ready_list.append(job)
        job.cpu.resched()

    def on_terminated(self, job):
        self.ready_list.remove(job)
        job.cpu.resched()

    def schedule(self, cpu):
        if cpu.running is not None or not self.ready_list:
            return None  # busy: never preempt / nothing ready
        job = min(self.ready_list, key=lambda j: (j.absolute_deadline, j.task.identifier))
        return (job, cpu)


def simulate(duration_ms):
    cfg = Configuration()
    cfg.cycles_per_ms = CYCLES_PER_MS
    cfg.duration = duration_ms * CYCLES_PER_MS - 1
    cfg.scheduler_info.clas = NPEDF
    cfg.add_processor(name="CPU1", identifier=1)
    for i, (c, t) in enumerate(TASKS, 1):
        cfg.add_task(
            name=f"T{i}",
            identifier=i,
            task_type="Periodic",
            period=t,
            activation_date=0,
            wcet=c,
            deadline=t,
            abort_on_miss=False,
        )
    cfg.check_all()
    model = Model(cfg)
    model.run_model()
    return model


def check(model):
    """Return (released, terminated, misses, simso_misses, resumed_jobs)."""
    now = model.now()
    jobs = [j for task in model.task_list for j in task.jobs]
    done = [j for j in jobs if j.end_date is not None and not j.aborted]
    misses = sum(
        1
        for j in jobs
        if (j.exceeded_deadline if j.end_date is not None else j.absolute_deadline_cycles < now)
    )
    # Non-preemption: the EXECUTE events, with consecutive repeats of the same
    # job collapsed (SimSo interrupts and reloads the running job on every
    # event), must name each job once.
    events = sorted(
        (e[1].id_, e[1].job.name)
        for task in model.task_list
        for e in task.monitor
        if e[1].event == JobEvent.EXECUTE
    )
    runs = [name for k, (_, name) in enumerate(events) if k == 0 or events[k - 1][1] != name]
    resumed = len(runs) - len(set(runs))
    return len(jobs), len(done), misses, model.results.total_exceeded_count, resumed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=100.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    duration_ms = round(args.duration_s * 1000)

    runs, stats = [], None
    for r in range(args.repeat):
        t0 = time.perf_counter()
        model = simulate(duration_ms)
        runs.append(time.perf_counter() - t0)
        stats = check(model)
        print(
            f"run {r + 1}/{args.repeat}: {runs[-1]:.3f} s, released/terminated/"
            f"misses/simso_misses/resumed = {stats}",
            file=sys.stderr,
        )
        del model
        gc.collect()  # untimed: drop the previous model so runs start alike
    released, terminated, misses, simso_misses, resumed = stats
    if misses or simso_misses or resumed:
        print(
            f"WARNING: expected 0 misses and 0 resumed jobs, got misses={misses} "
            f"simso_misses={simso_misses} resumed={resumed}",
            file=sys.stderr,
        )
    median = statistics.median(runs)
    print(
        json.dumps(
            {
                "simso_version": simso.__version__,
                "jobs": released,
                "jobs_terminated": terminated,
                "misses": misses,
                "runs_s": [round(x, 4) for x in runs],
                "median_s": round(median, 4),
                "jobs_per_s": round(released / median, 1),
            }
        )
    )
    return 1 if (misses or resumed) else 0


if __name__ == "__main__":
    sys.exit(main())
