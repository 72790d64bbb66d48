"""Play dialog-based retrieval in a browser, or export the dialogs played.

    python -m dialog_env.play [--agent RUN_DIR] [--host 127.0.0.1] [--port 8000] [--log runs/play/dialogs.jsonl]
    python -m dialog_env.play export --log runs/play/dialogs.jsonl --out runs/minari [--dataset-id ...]

Serving: with ``--agent`` (a finished ``train_agent.py --agent paper`` run) a person can be the
shopper and the agent searches; in both cases a person can be the search engine against the
simulated shopper (``--user``). The page binds to localhost unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dialog_env.errors import DialogEnvError

DEFAULT_LOG = Path("runs") / "play" / "dialogs.jsonl"


def serve_parser() -> argparse.ArgumentParser:
    """The options of the server."""
    parser = argparse.ArgumentParser(prog="python -m dialog_env.play", description=__doc__.splitlines()[0])
    parser.add_argument("--agent", type=Path, default=None, help="a run of train_agent.py --agent paper")
    parser.add_argument("--catalog", default=None, help="catalogue file (default: the run's, or the synthetic one)")
    parser.add_argument("--split", default="test", help="split without --agent (default test)")
    parser.add_argument("--user", default="rule", help="simulated shopper of the search-engine mode (default rule)")
    parser.add_argument("--user-kwargs", type=json.loads, default={}, help="its keyword arguments, as JSON")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help=f"dialog log, appended (default {DEFAULT_LOG})")
    parser.add_argument("--max-turns", type=int, default=10, help="turns per dialog (default 10)")
    parser.add_argument("--candidates", type=int, default=24, help="images per page in search-engine mode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the targets and first images")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    return parser


def export_parser() -> argparse.ArgumentParser:
    """The options of ``export``."""
    parser = argparse.ArgumentParser(
        prog="python -m dialog_env.play export", description="Dialog logs as a Minari dataset"
    )
    parser.add_argument("--log", type=Path, nargs="+", required=True, help="dialog logs (JSONL)")
    parser.add_argument("--out", type=Path, required=True, help="Minari datasets folder")
    parser.add_argument("--dataset-id", default="dialog-retrieval/play-v0", help="namespace/name-vN")
    parser.add_argument("--agent", type=Path, default=None, help="encode feedback with this run's vocabulary")
    parser.add_argument("--catalog", default=None, help="the catalogue the dialogs were played on (default: as logged)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that id")
    return parser


def build_server(args: argparse.Namespace):  # noqa: ANN201 - a Flask app and its host
    """The Flask app for ``args`` (a startup problem becomes the page's message and is returned too)."""
    from agents.checkpoints import load_paper_run
    from dialog_env.play.log import DialogLog
    from dialog_env.play.server import create_app
    from dialog_env.play.session import PlayHost

    log = DialogLog(args.log)
    try:
        if args.agent is not None:
            loaded = load_paper_run(args.agent, args.catalog)
        else:
            from dialog_env.env import make_catalog

            loaded = {"catalog": make_catalog(args.catalog), "catalog_name": args.catalog, "split": args.split}
        host = PlayHost(
            loaded["catalog"],
            log,
            agent=loaded.get("agent"),
            vocabulary=loaded.get("vocabulary"),
            user=args.user,
            user_kwargs=args.user_kwargs,
            max_turns=args.max_turns,
            candidates=args.candidates,
            seed=args.seed,
            catalog_name=loaded["catalog_name"],
            split=loaded["split"],
            agent_name=loaded.get("agent_name"),
        )
    except DialogEnvError as error:
        return create_app(None, startup_error=f"cannot play: {error}"), str(error)
    return create_app(host, user=args.user), None


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["export"]:
            return _export(export_parser().parse_args(argv[1:]))
        return _serve(serve_parser().parse_args(argv))
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(f'error: {error}; install the play extra: pip install -e ".[play]"', file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    app, problem = build_server(args)
    if problem is not None:
        print(f"error: {problem}\n(the page says so too)", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: other machines can reach the page", file=sys.stderr)
    server = make_server(args.host, args.port, app, threaded=True)
    print(
        f"play at http://{args.host}:{server.server_port}/ (dialogs appended to {args.log}); Ctrl-C to stop", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0 if problem is None else 2


def _export(args: argparse.Namespace) -> int:
    from dialog_env.play.export import export_minari

    vocabulary = None
    if args.agent is not None:
        from agents.checkpoints import load_paper_run

        vocabulary = load_paper_run(args.agent, args.catalog)["vocabulary"]
    report = export_minari(
        args.log, args.dataset_id, args.out, vocabulary=vocabulary, catalog=args.catalog, overwrite=args.overwrite
    )
    print(
        f"dataset {report.dataset_id!r} in {report.path}: {report.episodes} episodes ({report.human_episodes} with a "
        f"person as the shopper, {report.simulated_episodes} as the search engine), {report.steps} steps; left out: "
        f"{report.skipped_unfinished} unfinished, {report.skipped_without_steps} without a step"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
