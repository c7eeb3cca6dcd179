"""The `harness` command line: it parses flags, calls `harness.api` and prints what comes back.

Exit codes (docs/ARCHITECTURE.md, "Exit codes"): 0 success, 2 bad input, 1 anything else,
130 interrupted. Each subcommand imports what it needs when it runs: `harness report` never
loads the config schema, the training stack or Ray.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from harness import api
from harness.errors import HarnessInputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


EXIT_CODES = """exit codes:
  0  success
  2  bad input (space file, flags, --set, missing dataset files): one line naming the file and
     field or --set KEY; no traceback, nothing started or written
  1  anything else (a failed trial, a crash)
  130  interrupted (Ctrl-C)"""


def _epilog(*examples: str, codes: str = EXIT_CODES) -> str:
    return "examples:\n" + "".join(f"  {line}\n" for line in examples) + "\n" + codes


def _command(
    commands: argparse._SubParsersAction, name: str, summary: str, description: str, *examples: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help has its description, examples and the exit codes."""
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_epilog(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


class _Version(argparse.Action):
    """`--version`: computed only when asked for (it may run git)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> NoReturn:
        print(f"harness {version_string()}")
        parser.exit(EXIT_OK)


def version_string() -> str:
    """`0.1.0 (git 1a2b3c4, dirty)`: the installed version, and the commit in a git checkout."""
    from harness.provenance import source

    return source().describe()


def build_parser() -> argparse.ArgumentParser:
    """The `harness` argument parser with its subcommands."""
    parser = _Parser(
        prog="harness",
        description="Benchmark KD into spiking networks against direct training and conversion.",
        epilog=EXIT_CODES + "\n\nRun `harness COMMAND --help` for a command's flags and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version (and git commit) and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = _command(
        commands,
        "train",
        "run one trial from a space file's fixed values, without Ray",
        "Run one trial (teacher included, when the method needs one) from a space file's `fixed`\n"
        "values and `eval` block plus --set overrides, without Ray; log it as one MLflow run and\n"
        "print its metrics.",
        "harness train --space search_spaces/kd.yaml --method kd --set dataset.name=digits --set train.epochs=3",
        "harness train --space search_spaces/kd.yaml --method direct --set snn.time_steps=2",
    )
    train.add_argument("--space", required=True, type=Path, help="search-space YAML file")
    train.add_argument("--method", help="method to run (default: the file's first method)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted key, e.g. --set snn.time_steps=2 (repeatable)",
    )
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    train.add_argument("--experiment", help="MLflow experiment (default: the space's name)")
    train.add_argument("--teacher-cache", type=Path, help="teacher cache folder (default: runs/teacher_cache)")
    train.set_defaults(handler=run_train)

    sweep = _command(
        commands,
        "sweep",
        "search every method's space (Optuna on Ray Tune), every trial in MLflow",
        "Search each method of a space file with Optuna on Ray Tune (ASHA stopping weak trials),\n"
        "retrain each method's best configuration over new seeds, log every trial to MLflow and\n"
        "build the report. Checks everything `harness validate` checks before anything starts.",
        "harness sweep --space search_spaces/smoke.yaml",
        "harness sweep --space search_spaces/smoke.yaml --resume",
        "harness sweep --space search_spaces/kd.yaml --address auto --tracking-uri http://head:5000",
    )
    sweep.add_argument("--space", required=True, type=Path, help="search-space YAML file")
    _add_set(sweep)
    sweep.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    sweep.add_argument("--experiment", help="MLflow experiment (default: the space's name)")
    sweep.add_argument("--address", help="join a running Ray cluster: auto or ray://host:10001 (default: local Ray)")
    sweep.add_argument(
        "--storage",
        type=Path,
        default=Path("runs"),
        help="Tune experiments and the teacher cache; every node must reach it (default: ./runs)",
    )
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same space")
    sweep.set_defaults(handler=run_sweep_command)

    ui = _command(
        commands,
        "ui",
        "serve the MLflow UI for a store (127.0.0.1 unless --host says otherwise)",
        "Serve the MLflow UI for the store the other commands write (./mlflow.db by default),\n"
        "on this machine only unless --host says otherwise.",
        "harness ui",
        "harness ui --tracking-uri runs.db --port 5001",
    )
    ui.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///<cwd>/mlflow.db)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=run_ui)

    report = _command(
        commands,
        "report",
        "tables (md/tex/csv), figures (png/pdf) and report.md of an experiment",
        "Build an experiment's report from its MLflow runs: accuracy, time-step and noise tables\n"
        "(Markdown, LaTeX, CSV), figures (PNG, PDF) and report.md. Needs neither Ray nor torch.",
        "harness report --experiment smoke-digits",
        "harness report --experiment kd-mnist5k --out runs/kd-mnist5k/report --reference direct",
    )
    report.add_argument("--experiment", required=True, help="MLflow experiment (a sweep's space name)")
    report.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///<cwd>/mlflow.db)")
    report.add_argument("--out", type=Path, help="report folder (default: runs/<experiment>/report)")
    report.add_argument(
        "--reference",
        help="compare only this method with each other one in the significance table (default: every pair)",
    )
    report.add_argument(
        "--corruption-baseline",
        metavar="METHOD",
        help="method the corruption summary's mCE is relative to (default: the sweep's first that needs no "
        "teacher and trains at a T)",
    )
    report.set_defaults(handler=run_report)

    evaluate = _command(
        commands,
        "evaluate",
        "measure logged networks again under other eval.* settings, without training",
        "Reload a run's logged network (every finished trial logs one) and evaluate it again with\n"
        "--set eval.* overrides (new noise levels, another T curve), without training; the metrics\n"
        "are added to that run, so `harness report` shows them. --experiment does it for every\n"
        "final run of a sweep.",
        "harness evaluate --run 0a46e138f36f4188 --set 'eval.noise.gaussian=[0.3]'",
        "harness evaluate --experiment smoke-digits --set 'eval.noise={gaussian: [0.1, 0.3]}'",
    )
    target = evaluate.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", dest="run_id", help="the MLflow run id of a finished trial")
    target.add_argument("--experiment", help="every finished final run of this experiment")
    _add_set(evaluate)
    evaluate.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///<cwd>/mlflow.db)")
    evaluate.add_argument("--teacher-cache", type=Path, help="teacher cache folder (default: runs/teacher_cache)")
    evaluate.set_defaults(handler=run_evaluate)

    validate = _command(
        commands,
        "validate",
        "check a space file and print the plan; runs nothing",
        "Check a space file (and --set overrides) as `harness sweep` does, dataset files included,\n"
        "and print the plan: per method its trials and searched keys. Runs and writes nothing.",
        "harness validate search_spaces/smoke.yaml",
        "harness validate --space search_spaces/cifar10-paper.yaml --set dataset.root=~/data",
    )
    validate.add_argument("space", nargs="?", type=Path, help="search-space YAML file (or --space FILE)")
    validate.add_argument("--space", dest="space_option", type=Path, metavar="FILE", help="the same, as a flag")
    _add_set(validate)
    validate.set_defaults(handler=run_validate)

    plugins = _command(
        commands,
        "plugins",
        "list every method, model, dataset, noise and encoding with the distribution providing it",
        "List every registered method, model family, dataset, noise and input encoding with the\n"
        "distribution and entry point that provide it; exit 2 if one of them is broken.",
        "harness plugins",
    )
    plugins.set_defaults(handler=run_plugins)

    keys = _command(
        commands,
        "keys",
        "list every dotted key (fixed:, --set, space:) with its type, default and owner",
        "List every key a space file or --set accepts: the harness's sections, each model family's\n"
        "arguments under student.* and teacher.*, each method's own section (a plugin's too) and\n"
        "the space file's search.* and resources.*, with type, default, who adds the key, and\n"
        "whether another value makes another plan (a --resume with it is refused).",
        "harness keys",
        "harness keys | grep '^kd\\.'",
    )
    keys.set_defaults(handler=run_keys)
    return parser


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fixed dotted key, e.g. --set train.epochs=2 (repeatable)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `harness` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HarnessInputError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from harness.config.yaml import parse_override

    return [parse_override(text) for text in args.overrides]


def run_train(args: argparse.Namespace) -> int:
    """`harness train`: validate everything, then one trial logged as one MLflow run."""
    from harness.progress import TrainProgress

    # A bar over epochs and batches on a terminal (stderr), else one line per epoch; its
    # epochs and label come from the trial's config once it is resolved.
    with TrainProgress(0, label="") as progress:

        def start(config: Any) -> None:
            progress.epochs, progress.label = config.train.epochs, config.method

        outcome = api.train_once(
            args.space,
            method=args.method,
            overrides=_overrides(args),
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            teacher_cache=args.teacher_cache,
            log=progress.write,
            on_batch=progress.on_batch,
            on_start=start,
        )
    if outcome.failure is not None:
        print(f"harness: trial failed: {outcome.failure}", file=sys.stderr)
        return EXIT_FAILED
    print(summary_table(outcome.metrics))
    print(f"\nMLflow run {outcome.run_id} in experiment {outcome.experiment!r} at {outcome.tracking_uri}")
    return EXIT_OK


def run_evaluate(args: argparse.Namespace) -> int:
    """`harness evaluate`: logged networks measured again, the metrics added to their runs."""
    results = api.evaluate(
        run_id=args.run_id,
        experiment=args.experiment,
        overrides=_overrides(args),
        tracking_uri=args.tracking_uri,
        teacher_cache=args.teacher_cache,
    )
    for run_id, metrics in results.items():
        print(f"run {run_id}")
        print(summary_table(metrics))
    return EXIT_OK


def run_validate(args: argparse.Namespace) -> int:
    """`harness validate FILE` (or `--space FILE`): everything `harness sweep` checks, then the
    plan; runs nothing."""
    from harness.sweep.final import describe_plan

    if (args.space is None) == (args.space_option is None):
        raise HarnessInputError(
            "validate: give the space file once: harness validate FILE or harness validate --space FILE"
        )
    print(describe_plan(api.validate(args.space or args.space_option, _overrides(args))))
    return EXIT_OK


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _refuse_broken(broken: list[str]) -> None:
    if broken:
        raise HarnessInputError(broken[0] + (f" ({len(broken) - 1} more broken)" if len(broken) > 1 else ""))


def run_plugins(args: argparse.Namespace) -> int:
    """`harness plugins`: every registered entry with its distribution; exit 2 if one is broken."""
    from harness.plugins import plugin_rows

    rows, broken = plugin_rows()
    _print_table([("kind", "name", "distribution", "entry point", "status"), *rows])
    _refuse_broken(broken)
    return EXIT_OK


def run_keys(args: argparse.Namespace) -> int:
    """`harness keys`: every dotted key with its type, default and owner; exit 2 if a plugin is broken."""
    from harness.key_table import key_table

    rows, broken = key_table()
    table = [(key, kind, default, f"({owner})", "yes" if plan else "no") for key, kind, default, owner, plan in rows]
    _print_table([("key", "type", "default", "owner", "changes the plan"), *table])
    _refuse_broken(broken)
    return EXIT_OK


def run_sweep_command(args: argparse.Namespace) -> int:
    """`harness sweep`: validate, then search and the final stage on Ray; MLflow from the driver."""
    from harness.ui_links import sweep_ui_lines  # links to the final runs and each method's compare page

    result = api.sweep(
        args.space,
        overrides=_overrides(args),
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        storage=args.storage,
        address=args.address,
        resume=args.resume,
    )
    options, outcome = result.options, result.outcome
    for method, done in outcome.methods.items():
        print(f"{method}: {done.trials} trials; best {done.best}")
    print(f"\nMLflow: experiment {options.experiment!r} at {options.tracking_uri} (parent run {outcome.parent_run_id})")
    if result.report is not None:
        print(f"Report: {result.report} (also logged to the parent run's artifacts under report/)")
    print("\n".join(sweep_ui_lines(options.tracking_uri, options.experiment)), flush=True)
    if outcome.missing:  # the report says so too, in its "Missing" section
        for line in outcome.missing:
            print(f"harness: missing: {line}", file=sys.stderr)
        print(
            f"harness: {len(outcome.missing)} planned final run(s) did not finish "
            "(listed above and in the report's Missing section)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    """`harness report`: an experiment's tables, figures and report.md from its MLflow runs."""
    report = api.report(
        args.experiment,
        tracking_uri=args.tracking_uri,
        out=args.out,
        reference=args.reference,
        corruption_baseline=args.corruption_baseline,
    )
    print(f"Report: {report}")
    print(f"Tables in {report.parent / 'tables'}, figures in {report.parent / 'figures'}")
    return EXIT_OK


def run_ui(args: argparse.Namespace) -> int:
    """`harness ui`: `mlflow ui` on the same store the other commands write."""
    import shutil

    from harness import ui_links
    from harness.tracking import absolute_tracking_uri

    uri = absolute_tracking_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise HarnessInputError(f"--tracking-uri: no MLflow store at {uri}; run harness train or harness sweep first")
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    print("\n".join(ui_links.ui_lines(uri, args.host, args.port)), flush=True)  # before the server starts
    # The server runs in a session of its own, so that this process alone decides when it stops:
    # on the first Ctrl-C (or SIGTERM) it ends the server's whole process group and waits for it.
    server = subprocess.Popen(command, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        _stop(server)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


UI_STOP_S = 5.0  # how long `harness ui` waits for the MLflow server to stop before killing it


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(server: subprocess.Popen) -> None:
    """Ends the server's process group (its workers too): SIGTERM, then SIGKILL after `UI_STOP_S`."""
    for kind in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, kind)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=UI_STOP_S)
            return
        except subprocess.TimeoutExpired:
            continue


def summary_table(metrics: dict[str, float]) -> str:
    """The final metrics as an aligned two-column table, accuracies first."""

    def order(key: str) -> tuple[int, str]:
        groups = ("test_accuracy", "teacher_", "timestep/", "noise/", "firing_rate", "")
        return next(i for i, prefix in enumerate(groups) if key.startswith(prefix)), key

    rows = [(key, f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}") for key, value in metrics.items()]
    rows.sort(key=lambda row: order(row[0]))
    width = max(len(key) for key, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{key:<{width}}  {value}" for key, value in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
