"""``dm-ssl sweep``: run a table's grid, locally or as a Slurm job array through submitit.

    dm-ssl sweep A8 --runs-dir runs --data-dir data [--seeds 0 1 2] [--only '*mixup*']
                 [--launcher local|slurm] [--dry-run] [--set key=value ...]

Each (cell, seed) is one run directory, ``<runs_dir>/<table>/<cell>_s<seed>/``, trained by
``dm-ssl train`` in a subprocess (``torchrun``-style DDP with ``--gpus-per-run`` > 1) from the
cell's config, which the sweep writes to ``<runs_dir>/<table>/.sweep/<cell>_s<seed>.yaml``.
A run whose ``results.json`` says ``finished`` is skipped; one with a checkpoint is resumed
(exactly: dm_ssl's resume is bit-identical on CPU); a ``failed`` one is listed and left alone
unless ``--retry-failed`` (which moves it aside and starts it again). A lock file in the run
directory (``.sweep.lock``: host, pid, job) keeps two sweeps — or two array tasks — from ever
training one run at the same time.

Slurm: one job array (``--partition``, ``--account``, ``--time``, ``--gpus-per-run``,
``--cpus-per-run``, ``--max-parallel``); on preemption or time-out submitit signals the job,
the job stops its ``dm-ssl train`` (which saves its checkpoint at the end of the step and exits
75), and requeues itself; the requeued task resumes the run. ``--launcher local`` runs the same
job function one run after another (``--parallel N`` at a time; with GPUs, one per visible GPU
each); submitit's ``local`` / ``debug`` clusters (``--cluster``) run it without Slurm.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from .tables import Table

LOCK_FILE = ".sweep.lock"
SWEEP_DIR = ".sweep"
#: what a run directory's state asks the sweep to do
ACTIONS = {"new": "start", "partial": "resume", "interrupted": "resume", "finished": "skip",
           "failed": "skip (failed)", "running": "skip (running)"}


class SweepError(ValueError):
    """A sweep that cannot start; the message names the table, cell or option."""


@dataclass
class RunSpec:
    """One (cell, seed) of a table, ready to train."""

    table: str
    cell: str
    seed: int
    run_dir: str
    config_path: str
    config: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.cell}_s{self.seed}"


def expand(table: Table, runs_dir: Path, *, seeds: Optional[Sequence[int]] = None,
           only: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None
           ) -> List[RunSpec]:
    """The table's runs (cells × seeds), configs validated (one clear error naming the cell)."""
    from dm_ssl.config import ConfigError, validate

    cells = table.select(only)
    if not cells:
        raise SweepError(f"--only {only!r} matches no cell of table {table.name} (cells: "
                         f"{', '.join(c.id for c in table.cells[:8])}, ...)")
    root = Path(runs_dir) / table.name
    specs = []
    for cell in cells:
        for seed in (seeds if seeds else table.seeds):
            name = f"{cell.id}_s{seed}"
            cfg = {**cell.config, **(overrides or {}), "seed": int(seed),
                   "save_dir": str(root), "save_name": name,
                   "experiment": {"table": table.name, "cell": cell.id, "setting": cell.setting,
                                  "method": cell.method, "reference": cell.reference,
                                  "metric": table.metric,
                                  **({"param": list(cell.param)} if cell.param else {}),
                                  **({"columns": [list(c) for c in table.columns]}
                                     if table.columns else {})}}
            cfg.pop("resume", None)
            try:
                validate(dict(cfg))
            except ConfigError as err:
                raise SweepError(f"table {table.name}, cell {cell.id}: {err}") from None
            specs.append(RunSpec(table.name, cell.id, int(seed), str(root / name),
                                 str(root / SWEEP_DIR / f"{name}.yaml"), cfg))
    return specs


# -- run state ---------------------------------------------------------------------------------
def run_status(run_dir: Path) -> str:
    """``new``, ``partial`` (a checkpoint, no result), ``interrupted``, ``finished``, ``failed``
    or ``running`` (locked by a live process or another host's job)."""
    from dm_ssl.records import read_json

    run_dir = Path(run_dir)
    if _lock_owner_alive(run_dir):
        return "running"
    results = read_json(run_dir / "results.json") or {}
    status = results.get("status")
    if status in ("finished", "failed", "interrupted"):
        return status
    if any((run_dir / n).exists() for n in ("latest_model.pth", "latest_model.pth.prev")):
        return "partial"
    return "new"


def _owner() -> Dict[str, Any]:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") \
        or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "job": f"{job}_{task}" if job and task else job}


def _read_lock(run_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_owner_alive(run_dir: Path) -> bool:
    lock = _read_lock(run_dir)
    if lock is None:
        return False
    if lock.get("host") == socket.gethostname():
        return _pid_alive(int(lock.get("pid", 0)))
    return True  # another host's process: cannot check, so respect it


def acquire(run_dir: Path) -> None:
    """Take the run's lock, or raise :class:`SweepError` if a live owner holds it. A stale lock
    (its process gone, or the same Slurm job requeued) is taken over."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = _owner()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            lock = _read_lock(run_dir) or {}
            same_job = me["job"] is not None and lock.get("job") == me["job"]
            if _lock_owner_alive(run_dir) and not same_job:
                raise SweepError(f"{run_dir} is being trained by {lock} (lock {path}); not "
                                 "starting it twice") from None
            path.unlink(missing_ok=True)  # stale
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        return
    raise SweepError(f"cannot take the lock {path}")


def release(run_dir: Path) -> None:
    lock = _read_lock(run_dir)
    if lock and lock.get("pid") == os.getpid() and lock.get("host") == socket.gethostname():
        (Path(run_dir) / LOCK_FILE).unlink(missing_ok=True)


# -- one run -------------------------------------------------------------------------------------
def train_command(spec: RunSpec, gpus: int = 1, status: Optional[str] = None) -> List[str]:
    """``dm-ssl train`` for the run (``torchrun --nproc_per_node`` with more than one GPU);
    ``--set resume=true`` when the run has a checkpoint (``status``: the run's status before
    this job took its lock)."""
    cmd = [sys.executable, "-m", "dm_ssl.cli", "train", "--config", spec.config_path]
    if gpus > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpus}", "-m", "dm_ssl.cli", "train", "--config",
               spec.config_path]
    if (status or run_status(Path(spec.run_dir))) in ("partial", "interrupted"):
        cmd += ["--set", "resume=true"]
    return cmd


class CellJob:
    """The job function of every launcher: train one run to the end, or stop it cleanly.

    Also submitit's checkpoint protocol (``checkpoint`` is called in the job's process when
    Slurm signals a preemption or time-out): the training subprocess is asked to stop
    (SIGTERM: it saves at the end of the step), and the same job is resubmitted; it resumes."""

    def __init__(self, gpus: int = 1, log: bool = True) -> None:
        self.gpus, self.log = gpus, log
        self._proc: Optional[subprocess.Popen] = None

    def __getstate__(self) -> Dict[str, Any]:
        return {"gpus": self.gpus, "log": self.log, "_proc": None}

    def __call__(self, spec: RunSpec) -> Dict[str, Any]:
        from dm_ssl.records import read_json

        status = run_status(Path(spec.run_dir))
        if status in ("finished", "failed"):
            return {"run": spec.name, "status": status, "returncode": 0}
        acquire(Path(spec.run_dir))
        try:
            _write_config(spec)
            cmd = train_command(spec, self.gpus, status)
            out = open(Path(spec.run_dir) / "sweep.log", "a") if self.log else None
            try:
                self._proc = subprocess.Popen(cmd, stdout=out or subprocess.DEVNULL,
                                              stderr=subprocess.STDOUT)
                code = self._proc.wait()
            finally:
                self._proc = None
                if out is not None:
                    out.close()
        finally:
            release(Path(spec.run_dir))
        results = read_json(Path(spec.run_dir) / "results.json") or {}
        return {"run": spec.name, "status": results.get("status", "unknown"),
                "returncode": code}

    def stop(self, timeout: float = 120.0) -> None:
        """Ask the training subprocess to save and stop; kill it after ``timeout`` s.

        Called from signal handlers, i.e. while ``__call__`` may sit in ``Popen.wait``, which
        holds the Popen's wait lock: so this waits *without reaping* (``waitid(WNOWAIT)``);
        the interrupted ``wait`` reaps the child when the handler returns."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        if not _exited(proc.pid, timeout):
            proc.kill()
            _exited(proc.pid, 30.0)

    def checkpoint(self, spec: RunSpec) -> Any:
        import submitit

        self.stop()
        return submitit.helpers.DelayedSubmission(CellJob(self.gpus, self.log), spec)


def _exited(pid: int, timeout: float) -> bool:
    """Whether child ``pid`` exits within ``timeout`` s; leaves it to be reaped by its Popen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if hasattr(os, "waitid"):
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
                if info is not None:
                    return True
            else:  # no waitid (macOS): a signal 0 fails once the child is reaped
                os.kill(pid, 0)
        except ChildProcessError:  # already reaped
            return True
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _write_config(spec: RunSpec) -> None:
    path = Path(spec.config_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(spec.config, sort_keys=False))
    os.replace(tmp, path)


# -- launchers -----------------------------------------------------------------------------------
def plan(specs: Sequence[RunSpec]) -> List[Dict[str, str]]:
    return [{"run": s.name, "status": (st := run_status(Path(s.run_dir))),
             "action": ACTIONS[st]} for s in specs]


def move_aside(spec: RunSpec, why: str = "failed") -> None:
    """Move a failed (or ``changed``) run aside (never deleted) so that it starts again."""
    run = Path(spec.run_dir)
    target = run.with_name(f"{run.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(run), str(target))
    print(f"dm-ssl sweep: moved the {why} run {run} to {target}", file=sys.stderr)


def config_changes(spec: RunSpec) -> List[str]:
    """How the run already in ``spec.run_dir`` differs from what the sweep asks for now (its
    ``config.yaml`` against the cell's config with this sweep's ``--set`` / ``--seeds``), as
    ``key: old -> new``; empty for a new run or the same config. Runtime keys
    (``operational`` keys: :func:`dm_ssl.config.key_kind`) are not compared."""
    from dm_ssl.config import ConfigError, config_changes, read_run_config, sweep_keys, validate

    saved = read_run_config(Path(spec.run_dir))
    if saved is None:
        return []  # no record, or unreadable: the run's own resume checks still guard it
    try:
        wanted = validate(dict(spec.config))
    except ConfigError:
        return []
    return config_changes(saved, wanted, sweep_keys(spec.config))


def _visible_gpus() -> List[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001  (no torch CUDA: CPU runs)
        return []


def run_local(specs: Sequence[RunSpec], *, parallel: int = 1, gpus_per_run: int = 1,
              report: Any = print) -> List[Dict[str, Any]]:
    """One run after another (``parallel`` at a time; each gets its own GPUs when there are)."""
    todo = [s for s in specs if run_status(Path(s.run_dir)) in ("new", "partial", "interrupted")]
    gpus = _visible_gpus()
    slots = max(1, parallel)
    if gpus:
        slots = min(slots, max(1, len(gpus) // gpus_per_run))
    results: List[Dict[str, Any]] = []
    running: Dict[int, tuple] = {}  # slot -> (process, spec, t0)
    queue = list(todo)
    try:
        while queue or running:
            for slot in range(slots):
                if slot in running or not queue:
                    continue
                spec = queue.pop(0)
                env = dict(os.environ)
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(
                        gpus[slot * gpus_per_run:(slot + 1) * gpus_per_run])
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dm_ssl.experiments.sweep", "--run-json",
                     json.dumps(spec.__dict__), "--gpus", str(gpus_per_run)], env=env)
                running[slot] = (proc, spec, time.time())
            for slot, (proc, spec, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[slot]
                from dm_ssl.records import read_json

                res = read_json(Path(spec.run_dir) / "results.json") or {}
                row = {"run": spec.name, "status": res.get("status", "unknown"),
                       "returncode": proc.returncode, "seconds": round(time.time() - t0, 1),
                       "metric": res.get(spec.config["experiment"]["metric"])}
                results.append(row)
                report(_line(row))
            time.sleep(0.2)
    except KeyboardInterrupt:  # stop the runs cleanly: they save and can be resumed
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _, _ in running.values():
            proc.wait()
        raise
    return results


def _line(row: Dict[str, Any]) -> str:
    metric = row.get("metric")
    shown = f"{metric * 100:.2f}" if isinstance(metric, (int, float)) else "-"
    return (f"{row['run']:<48} {row['status']:<12} {shown:>7}  "
            f"({row.get('seconds', '?')} s, exit {row['returncode']})")


def run_submitit(specs: Sequence[RunSpec], folder: Path, *, cluster: Optional[str] = None,
                 gpus_per_run: int = 1, cpus_per_run: int = 4, time_min: int = 60 * 24,
                 partition: Optional[str] = None, account: Optional[str] = None,
                 max_parallel: int = 64, mem_gb: Optional[int] = None,
                 extra: Optional[Dict[str, Any]] = None) -> List[Any]:
    """Submit the runs as one job array; returns the submitit jobs."""
    try:
        import submitit
    except ImportError:
        raise SweepError("--launcher slurm needs submitit (pip install submitit)") from None
    todo = [s for s in specs if run_status(Path(s.run_dir)) in ("new", "partial", "interrupted")]
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: Dict[str, Any] = {"timeout_min": int(time_min), "cpus_per_task": cpus_per_run,
                              "tasks_per_node": 1, "nodes": 1, "name": f"dm-ssl-{todo[0].table}"}
    if gpus_per_run:
        params["gpus_per_node"] = gpus_per_run
    if executor.cluster == "slurm":
        params["slurm_array_parallelism"] = max_parallel
        if partition:
            params["slurm_partition"] = partition
        if account:
            params["slurm_account"] = account
        if mem_gb:
            params["mem_gb"] = mem_gb
    params.update(extra or {})
    executor.update_parameters(**params)
    job = CellJob(gpus_per_run)
    return executor.map_array(job, todo)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one spec (the local launcher's worker process)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--run-json", required=True)
    ap.add_argument("--gpus", type=int, default=1)
    args = ap.parse_args(argv)
    spec = RunSpec(**json.loads(args.run_json))
    job = CellJob(args.gpus)

    def forward(signum, frame):  # let the run save and stop, then report
        job.stop()
    signal.signal(signal.SIGTERM, forward)
    # Ctrl-C reaches the whole process group: the sweep forwards it as SIGTERM, so this worker
    # and its training process (which inherits SIG_IGN) must not die of it half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = job(spec)
    except SweepError as err:
        print(f"dm-ssl sweep: {err}", file=sys.stderr)
        return 2
    from dm_ssl.run.errors import EXIT_STOPPED

    return 0 if out["returncode"] in (0, EXIT_STOPPED) else 1


if __name__ == "__main__":
    sys.exit(_main())
