"""``dm-ssl train``: one run from its validated config to ``results.json``.

The order is the run's contract: every refusal (a run already there, a resume that would
change the run, a damaged checkpoint, a bad net or dataset) happens before the run's record
changes — its log lines and tensorboard wait for :func:`dm_ssl.run.staging.commit` — and a
new run refused while building leaves no folder behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from dm_ssl.config import ConfigError, absolute_paths, validate
from dm_ssl.evaluation.run_metrics import robustness

from .errors import RunIncompleteError, RunStopped
from .folder import CKPT, checkpoints, fail, first_missing, remove_new_run_dir, write_results
from .health import health_hook
from .hooks import progress_hook, stop_hook
from .prepare import init_distributed, is_main, prepare_run, set_seed
from .resume import ResumePlan, check_resume_config, remove_partial, resume_run
from .staging import commit


def train(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Validate ``cfg`` and train it in ``<save_dir>/<save_name>/`` (a new run, or with
    ``resume: true`` the run's checkpoint continued); returns the results that
    ``results.json`` records and prints them as one JSON line on stdout."""
    cfg = absolute_paths(validate(cfg))  # config.yaml records them: eval from any directory
    run_dir = Path(cfg["save_dir"]) / cfg["save_name"]
    ckpt = Path(cfg.get("load_path") or run_dir / CKPT)
    if cfg.get("resume") and not any(p.exists() for p in checkpoints(ckpt)):
        raise ConfigError(f"resume: no checkpoint at {ckpt}")
    if not cfg.get("resume") and any(p.exists() for p in checkpoints(run_dir / CKPT)):
        raise ConfigError(f"{run_dir} already holds a run (checkpoints, results): pass "
                          "--set resume=true to continue it, or choose another save_name")
    plan = check_resume_config(cfg, run_dir) if cfg.get("resume") else None
    if plan is not None and plan.finished is not None:
        return _already_finished(cfg, run_dir, plan.finished)
    resolved = dict(cfg)  # what config.yaml records: the user's (global) settings
    created = first_missing(run_dir)  # removed again if the run is refused while building
    cfg = init_distributed(cfg)
    if cfg.get("sync_bn") and cfg["distributed"] and not str(cfg["device"]).startswith("cuda"):
        raise ConfigError(f"config key 'sync_bn': torch's SyncBatchNorm runs on CUDA devices "
                          f"only (device is {cfg['device']}); leave it false on CPU")
    set_seed(cfg["seed"])
    try:
        alg, info, run_dir = prepare_run(cfg, staged=True)
    except BaseException:
        # a bad net, mixer, loss or weights file shows only while building: a new run that
        # never started leaves no directory behind (an existing one is never removed)
        if created is not None and is_main(cfg):
            remove_new_run_dir(run_dir, created)
        raise
    try:
        return _train_built(cfg, resolved, alg, info, run_dir, ckpt, plan)
    finally:
        close_tensorboard(alg)


def _already_finished(cfg: Dict[str, Any], run_dir: Path,
                      results: Dict[str, Any]) -> Dict[str, Any]:
    """``resume: true`` on a run finished at this length: said, its results printed again
    (stdout's JSON line, as when it finished), nothing written."""
    if is_main(cfg):
        print(f"dm-ssl: {run_dir} already finished at iteration {results.get('iterations')} "
              "(results.json); nothing to do — to train it longer, resume with "
              "--set num_train_iter=<more>", file=sys.stderr)
        print(json.dumps(results), flush=True)
    return results


def close_tensorboard(alg: Any) -> None:
    """Flush and close the run's tensorboard writer (semilearn never closes it): its events
    are on disk when :func:`train` returns, whatever the process does next (``dm-ssl`` ends
    without the interpreter's teardown: ``dm_ssl.cli.exit_now``)."""
    writer = getattr(getattr(alg, "tb_log", None), "writer", None)
    if writer is not None:
        writer.close()


def _train_built(cfg: Dict[str, Any], resolved: Dict[str, Any], alg: Any, info: Any,
                 run_dir: Path, ckpt: Path, plan: Optional[ResumePlan]) -> Dict[str, Any]:
    """The built run: resume it or start it, train, evaluate, record."""
    from dm_ssl import records

    resumed_from, event = None, {}
    if plan is not None:  # before anything of the run's record changes: a refusal keeps it
        resumed_from = str(resume_run(alg, ckpt))
        if not alg.schedule_restored and plan.saved_total:  # written before the schedule clock
            alg.schedule_base = plan.saved_total
        extension = alg.extend_schedule()
        event = {"changes": plan.changes} if plan.changes else {}
        if extension is not None:
            event["extension"] = extension._asdict()
    commit(alg, run_dir, bool(cfg["use_tensorboard"]), is_main(cfg))
    if plan is not None:
        remove_partial(alg, ckpt)
        if is_main(cfg):
            _say_resumed(run_dir, resumed_from, alg, event)
    if is_main(cfg):
        with open(run_dir / "config.yaml", "w") as fh:
            yaml.safe_dump(resolved, fh, sort_keys=False)
        if resumed_from:
            records.truncate_metrics(run_dir, alg.it)
        else:
            (run_dir / records.METRICS_FILE).unlink(missing_ok=True)
        # num_labels as the data has it (supervised runs: the training (sub)set's size)
        records.record_start(run_dir, {**cfg, "num_labels": info.num_labels}, alg.device,
                             resumed_from=resumed_from, start_it=alg.it, event=event)
        alg.register_hook(records.metrics_hook(run_dir, alg.num_log_iter, alg.num_eval_iter),
                          "MetricsHook", "LOWEST")
    if cfg.get("progress", True):
        alg.register_hook(progress_hook(alg.num_train_iter), "ProgressHook", "LOWEST")
    alg.register_hook(stop_hook(run_dir), "StopHook", "LOWEST")
    if cfg["health"]:
        alg.register_hook(health_hook(cfg, run_dir, is_main(cfg)), "HealthHook", "LOWEST")
    from dm_ssl.algorithms import CheckpointWriteError, NonFiniteLossError

    try:
        alg.train()
    except RunStopped as err:
        write_results(run_dir, cfg, info, status="interrupted", reason=str(err),
                       iterations=err.it, num_train_iter=alg.num_train_iter)
        raise
    except NonFiniteLossError as err:  # the run's record says so; checkpoints stay as they were
        write_results(run_dir, cfg, info, status="failed", reason=str(err),
                       iterations=err.it, terms=err.terms)
        raise
    except CheckpointWriteError as err:
        try:  # the disk may be full: the record is best effort, the message is not
            write_results(run_dir, cfg, info, status="failed", reason=str(err),
                           iterations=alg.it)
        except OSError:
            pass
        raise
    except Exception as err:  # e.g. a damaged image met mid-epoch: failed, never "refused"
        fail(run_dir, cfg, info, alg, err)
    finally:  # a run that stops on an error ends its progress line: its message gets its own
        bar = getattr(alg.hooks_dict.get("ProgressHook"), "bar", None)
        if bar is not None:
            bar.close()
    if alg.it < alg.num_train_iter:  # the loop ended early: never report success for it
        write_results(run_dir, cfg, info, status="interrupted", iterations=alg.it,
                       num_train_iter=alg.num_train_iter)
        raise RunIncompleteError(f"training stopped at iteration {alg.it} of "
                                 f"{alg.num_train_iter}; results.json says interrupted")
    try:
        final = alg.evaluate("eval")
        results = {
            "status": "finished", "iterations": alg.it,
            "best_acc": float(alg.best_eval_acc), "best_it": int(alg.best_it) + 1,
            "final_acc": final["eval/top-1-acc"], "final_it": alg.it,
        }
        for name in filter(None, cfg["eval_mixed"].split(",")):  # fractions, as dm-ssl eval
            mixed = robustness(alg, info, None, False, name)[f"mixed_{name}"]
            results.update({f"mixed_{name}_top1": mixed["top1"],
                             f"mixed_{name}_top2": mixed["top2"]})
    except Exception as err:
        fail(run_dir, cfg, info, alg, err)
    write_results(run_dir, cfg, info, **results)
    results = {"algorithm": cfg["algorithm"], "dataset": info.name,
               "num_labels": info.num_labels, "seed": cfg["seed"], **results}
    if is_main(cfg):
        alg.print_fn(f"results: {json.dumps(results)}")
        print(json.dumps(results), flush=True)  # stdout: one JSON line, as `dm-ssl eval`
    return results


def _say_resumed(run_dir: Path, resumed_from: str, alg: Any, event: Dict[str, Any]) -> None:
    """The resume's lines on stderr: where it continues, and what it changes."""
    print(f"dm-ssl: resumed {run_dir} from {Path(resumed_from).name} at iteration {alg.it} of "
          f"{alg.num_train_iter}", file=sys.stderr)
    ext = event.get("extension")
    if ext:
        print(f"dm-ssl: the run's length changes from {ext['old_total']} to {ext['new_total']} "
              f"iterations at iteration {ext['at']}: the lr schedule and the DM ramps continue "
              "from the checkpoint, stretched over the rest (run.json records it)"
              + (f"; the schedule had ended at {ext['at']}, so the added iterations train at "
                 f"its final lr ({alg.optimizer.param_groups[0]['lr']:.4g})"
                 if ext["at"] == ext["old_total"] else ""), file=sys.stderr)
    changed = {k: v for k, v in event.get("changes", {}).items() if k not in ("num_train_iter",)}
    if changed:
        print("dm-ssl: this resume changes " + "; ".join(f"{k}: {a!r} -> {b!r}"
                                                       for k, (a, b) in changed.items())
              + " (run.json records it)", file=sys.stderr)
