"""`fuseflow` command line. Heavy libraries are imported only by the commands that need them."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from flows.env import environment, quiet_defaults
from flows.spec.project import DEFAULT_FILE
from tasks.errors import ConfigError

EXIT_OK, EXIT_RUN_FAILED, EXIT_CONFIG = 0, 1, 2


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _print_config_error(err: ConfigError) -> None:
    for issue in err.issues:
        print(f"error: {issue}", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    project = load_project(args.file)
    table = Table("pipeline", "kind", "description", "schedule", title=f"pipelines in {args.file}")
    for name in project.names:
        try:
            resolved = resolve(project, name)
            spec = resolved.spec
            schedules = ", ".join(_describe_schedule(s) for s in spec.schedule) or "-"
            table.add_row(name, resolved.describe(), spec.description, schedules)
        except ConfigError:
            table.add_row(name, "[red]invalid[/red]", "(run `fuseflow validate`)", "")
    _console().print(table)
    return EXIT_OK


def _describe_schedule(schedule: Any) -> str:
    for key in ("cron", "interval", "rrule"):
        value = getattr(schedule, key, None)
        if value is not None:
            text = f"{key} {value:g}s" if key == "interval" else f"{key} '{value}'"
            text += f" {schedule.timezone}" if schedule.timezone else ""
            return text + ("" if schedule.active else " (paused)")
    return "?"


def cmd_validate(args: argparse.Namespace) -> int:
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve_all

    project = load_project(args.file)
    specs = resolve_all(project)
    print(f"{args.file}: {len(specs)} pipeline(s) valid: {', '.join(specs)}")
    if getattr(args, "show_features", None) is not None:
        from flows.features_command import show_features

        return show_features(specs, project.base_dir, args.show_features)
    return EXIT_OK


def _choose_prefect_api(project_dir: str) -> Any:
    """The Prefect API a run uses (a running server when there is one: see flows/server.py), decided before Prefect
    is imported; None (with the error printed) when the server PREFECT_API_URL names is down."""
    from flows.server import PrefectServerDown, choose_prefect_api

    try:
        return choose_prefect_api(project_dir)
    except PrefectServerDown as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.spec.overrides import parse_overrides
    from flows.spec.project import load_project
    from flows.spec.resolve import resolve

    overrides = parse_overrides(args.set)
    resolve(load_project(args.file), args.name, overrides)  # config errors exit 2 before anything starts
    prefect_api = _choose_prefect_api(str(Path(args.file).parent))  # before Prefect is imported
    if prefect_api is None:
        return EXIT_RUN_FAILED

    def call() -> Any:
        from flows.pipeline import run_pipeline  # imports Prefect: inside the chosen API's environment

        from tasks.tracking.phases import process_started_at, startup_clock

        prefect_api.wait_ready()  # a background server starts while the import above runs
        with startup_clock(process_started_at()):  # the run's `startup` phase counts from this process' start
            return run_pipeline(args.name, {o.key: o.value for o in overrides} or None, args.file,
                                no_cache=args.no_cache, resume=args.resume)

    return _report_run(args.name, prefect_api, call, _print_summary)


def cmd_rerun(args: argparse.Namespace) -> int:
    prefect_api = _choose_prefect_api(".")
    if prefect_api is None:
        return EXIT_RUN_FAILED
    from flows.rerun import print_rerun, rerun

    def call() -> Any:
        import flows.pipeline  # noqa: F401 - the heavy imports of the run, while a background server starts

        prefect_api.wait_ready()
        return rerun(args.run_id, args.tracking_uri, args.use_cache)

    return _report_run(f"rerun-{args.run_id[:12]}", prefect_api, call, print_rerun)


def _report_run(label: str, prefect_api: Any, call: Any, show: Any) -> int:
    """Run `call` against `prefect_api` (a `PrefectApiChoice`) with tracebacks routed to a log file; exit code and
    one-line errors as the CLI promises. Prefect reads its settings when it is first imported, so everything that
    imports it (the log set-up, `call`) runs inside the chosen API's environment; a background server's lease is
    held throughout, and released however the run ends."""
    from flows.signals import sigterm_raises

    with environment(prefect_api.env), prefect_api.hold(), sigterm_raises():
        return _run_and_report(label, prefect_api.description, call, show)


def _run_and_report(label: str, description: str, call: Any, show: Any) -> int:
    import logging

    from flows.logs import route_tracebacks_to_file
    from flows.server import PrefectServerDown
    from flows.warm_client import forked_from

    log_file = route_tracebacks_to_file(label)
    logging.getLogger("fuseflow").info(description)
    if forked_from:
        logging.getLogger("fuseflow").info(forked_from)
    try:
        summary = call()
    except KeyboardInterrupt as interrupt:  # the run's true state: marked KILLED, or Ctrl-C came before it opened
        print(f"error: interrupted; {_run_state(interrupt)}", file=sys.stderr)
        return 130
    except ConfigError as err:
        _print_config_error(err)
        return EXIT_CONFIG
    except PrefectServerDown as exc:  # the background server did not come up: no run was started
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Exception as exc:  # noqa: BLE001 - one line on screen, the traceback is in the log file
        print(f"error: run failed: {type(exc).__name__}: {exc}\n({_run_state(exc)}; traceback in {log_file})",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    except BaseException as exc:  # SIGTERM (docker stop, Kubernetes, a CI timeout); anything else goes on up
        from flows.signals import EXIT_TERMINATED, is_termination

        if not is_termination(exc):
            raise
        print("error: terminated by SIGTERM; an open MLflow run is marked KILLED (`fuseflow run NAME --resume` "
              "continues it from its last checkpoint)", file=sys.stderr)
        return EXIT_TERMINATED
    show(summary)
    return EXIT_OK


def _run_state(exc: BaseException) -> str:
    """What became of the MLflow run of a failed run, truly (marked FAILED, left RUNNING because the store refused,
    or never opened), and how to continue it."""
    outcome = getattr(exc, "fuseflow_run", None)
    return "no MLflow run was opened" if outcome is None else outcome.describe()


def _print_summary(summary: Any) -> None:
    """The run id, the model and the test metrics of a `RunSummary`."""
    from rich.table import Table

    console = _console()
    console.print(f"MLflow run id: {summary.run_id}")
    console.print(f"model: {summary.model_uri}")
    if getattr(summary, "mlflow_run_url", None):  # a link in the MLflow UI's classic runs view
        console.print(f"MLflow run: {summary.mlflow_run_url}")
    scored = not any(key.startswith("test_") for key in summary.metrics)  # a scoring run: what it predicted
    table = Table("metric", "value", title=f"{summary.pipeline}: {'scoring' if scored else 'test'} metrics")
    for key, value in summary.metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    for key, value in summary.metrics.items():
        print(f"{key}: {value:.4f}")


def cmd_predict(args: argparse.Namespace) -> int:
    from flows.predict import predict_command

    return predict_command(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.deploy import serve_pipelines

    return serve_pipelines(args.file, args.names)


def cmd_up(args: argparse.Namespace) -> int:
    from flows.stack import up

    return up(args.file, args.names, prefect_port=args.prefect_port, mlflow_port=args.mlflow_port)


def cmd_server(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.server_command import status_lines, stop_server

    project = Path(args.file).parent
    print("\n".join(status_lines(project)) if args.action == "status" else stop_server(project), flush=True)
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.cache_command import cache_lines, clear_cache, prune_cache

    project = Path(args.file).parent
    if args.action == "info":
        print("\n".join(cache_lines(project)))
    elif args.action == "prune":
        print(prune_cache(project, args.max_gb))
    else:
        print(clear_cache(project))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fuseflow", description="Declarative ML pipelines: pipelines.yaml -> "
                                     "Prefect flows -> MLflow runs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, fn: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=fn)
        return p

    p = add("list", "list pipelines with their descriptions and schedules", cmd_list)
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file (default: %(default)s)")
    p = add("validate", "validate every pipeline; exit 0, or 2 with all errors", cmd_validate)
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file (default: %(default)s)")
    p.add_argument("--show-features", nargs="*", metavar="NAME", default=None,
                   help="print each table pipeline's features (type, missing %%, distinct values, strategy) as the run "
                   "will fit them; names limit it to those pipelines")
    p = add("run", "run one pipeline now as a Prefect flow recorded in MLflow", cmd_run)
    p.add_argument("name", help="pipeline name")
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key with a YAML value, e.g. --set train.optimizer.lr=3e-4 (repeatable)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute every step instead of reusing stored results (the new results are stored)")
    p.add_argument("--resume", action="store_true", help="continue the latest unfinished run of this pipeline and "
                   "config from its last training checkpoint, into the same MLflow run")
    p = add("rerun", "run again the resolved config logged with an MLflow run (not today's pipelines.yaml)", cmd_rerun)
    p.add_argument("run_id", help="the MLflow run to reproduce")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the "
                   "project's sqlite store)")
    p.add_argument("--use-cache", action="store_true", help="reuse stored step results (default: recompute all)")
    p = add("predict", "load a logged model and predict", cmd_predict)
    p.add_argument("model_uri", help="runs:/<run_id>/model, models:/<model_id>, models:/<name>/<version>, "
                                     "models:/<name>@<alias>")
    p.add_argument("input", nargs="?", help="CSV or JSON file of feature rows (or of texts, one per row)")
    p.add_argument("--text", action="append", default=[], help="a text to classify (repeatable)")
    p.add_argument("--proba", action="store_true", help="print a tab-separated table with a header: the label and "
                   "one probability column per class (tabular and fused models)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the "
                   "project's sqlite store)")
    p = add("serve", "serve pipelines as Prefect deployments with their schedules (needs PREFECT_API_URL)", cmd_serve)
    p.add_argument("names", nargs="*", metavar="NAME", help="pipelines to serve (default: all)")
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file (default: %(default)s)")
    p = add("up", "start a local Prefect server, an MLflow server and `serve` on 127.0.0.1; Ctrl-C stops all", cmd_up)
    p.add_argument("names", nargs="*", metavar="NAME", help="pipelines to serve (default: all)")
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file (default: %(default)s)")
    p.add_argument("--prefect-port", type=int, default=4200, help="Prefect server and UI port (default: %(default)s)")
    p.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server and UI port (default: %(default)s)")
    p = add("server", "the project's background Prefect server that `run` starts and reuses: status, or stop it",
            cmd_server)
    p.add_argument("action", choices=("status", "stop"), help="status: address, pids, idle time, runs using it; "
                   "stop: stop it now (exit 0 also when none runs)")
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file whose folder holds the server's state "
                   "(default: %(default)s)")
    p = add("cache", "the project's step cache: info (size, results per step), prune (evict least recently used "
            "down to a size), clear (remove it)", cmd_cache)
    p.add_argument("action", choices=("info", "prune", "clear"))
    p.add_argument("--max-gb", type=float, default=None, help="prune: the size to prune down to, in GB "
                   "(default: FUSEFLOW_CACHE_MAX_GB, else 20)")
    p.add_argument("--file", default=DEFAULT_FILE, help="pipelines file whose folder holds the cache "
                   "(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with quiet_defaults():  # before any command imports Prefect or MLflow; put back when it returns
            return args.func(args)
    except ConfigError as err:
        _print_config_error(err)
        return EXIT_CONFIG


def entry() -> None:
    """Console-script entry point: `main`, then, once every exit handler has run (Prefect drains its logs and
    events, MLflow ends its runs), leave without the interpreter's module teardown, which costs seconds with
    torch, MLflow and Prefect loaded and does nothing a finished command needs."""
    import atexit

    handed_off = warm_start_handoff(sys.argv[1:])  # the project's pre-imported Python runs it, when it is up
    if handed_off is not None:
        sys.exit(handed_off)
    outcome: dict[str, int] = {}
    atexit.register(_leave_now, outcome)  # registered first, so it runs after every handler registered later
    outcome["code"] = main()
    sys.exit(outcome["code"])


#: the commands handed to the warm start (flows/warm_client.py): they import the whole stack; the others are quick
WARM_COMMANDS = ("run",)


def warm_start_handoff(argv: Sequence[str]) -> int | None:
    """The exit code of `argv` run by the project's pre-imported Python; None when it is not handed off (another
    command, a usage error or --help, no warm start up): then this process runs it."""
    if not argv or argv[0] not in WARM_COMMANDS:
        return None
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(list(argv))
    except SystemExit:  # --help, a usage error: `main` prints it, in this process
        return None
    from pathlib import Path

    from flows.warm_client import handoff
    from tasks.tracking.phases import process_started_at

    return handoff(argv, Path(args.file).parent, process_started_at())


def _leave_now(outcome: dict[str, int]) -> None:
    if "code" not in outcome:  # main did not return (usage error, --help, an uncaught exception): exit normally
        return
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(outcome["code"])


if __name__ == "__main__":  # pragma: no cover
    entry()
