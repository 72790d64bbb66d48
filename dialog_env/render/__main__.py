"""Draw the catalogue, or one dialog, as pictures.

    python -m dialog_env.render draw --out DIR [--catalog FILE.h5] [--split NAME] [--size 128]
    python -m dialog_env.render dialog --out FILE.png [--run RUN_DIR] [--episode 0] [--max-turns 10]

``draw`` writes one PNG per image (``<id>.png``): the drawn catalogue, ready for
``python -m dialog_env.data.images build`` (features from pixels). ``dialog`` plays one test
dialog (episode ``--episode`` of the 1,000 evaluation episodes of seed ``--eval-seed``) with the
trained agent (the paper's or the dialog retriever) of a run made by ``train_agent.py`` (its
``checkpoints/final.pt``), or with the random agent without ``--run``, and writes its contact
sheet: the target, then every shown image with the target's rank and the shopper's words.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dialog_env.errors import DialogEnvError

#: Episodes of the shared evaluation set (``train_agent.py``'s default), of which ``--episode`` picks one.
EVALUATION_EPISODES = 1000


def _draw(args: argparse.Namespace) -> int:
    from dialog_env.env import make_catalog
    from dialog_env.render.sheet import draw_catalog

    catalog = make_catalog(args.catalog)
    if args.split != "all":
        catalog = catalog.select(args.split)
    paths = draw_catalog(catalog, args.out, size=args.size, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{len(paths)} images of catalogue {catalog.name!r} drawn in {args.out}")
    return 0


def play_dialog(
    run: Path | None, episode: int, max_turns: int, eval_seed: int, catalog: str | None, split: str
) -> dict[str, object]:
    """Play one evaluation episode and return what a sheet shows.

    Returns:
        ``{"catalog", "target", "shown", "ranks", "captions", "agent"}``: the split's catalogue, the
        target's index, and per turn (turn 0 first) the shown image, the target's rank and the
        shopper's feedback.
    """
    from agents.baselines import RandomAgent
    from agents.evaluation import EpisodeSet
    from dialog_env.vector import DialogRetrievalVectorEnv

    if run is not None:
        from agents.checkpoints import load_paper_run

        loaded = load_paper_run(run, catalog)
        envs = DialogRetrievalVectorEnv(
            num_envs=1,
            catalog=loaded["catalog"],
            split=loaded["split"],
            max_turns=max_turns,
            expose_target=True,
            vocabulary=loaded["vocabulary"],
        )
        agent = loaded["agent"]
    else:
        envs = DialogRetrievalVectorEnv(
            num_envs=1, catalog=catalog, split=split, max_turns=max_turns, expose_target=True
        )
        agent = RandomAgent(seed=eval_seed)
    episodes = EpisodeSet.draw(envs.catalog.num_images, max(EVALUATION_EPISODES, episode + 1), eval_seed)
    target, initial = int(episodes.targets[episode]), int(episodes.initials[episode])
    observations, infos = envs.reset(
        seed=eval_seed, options={"target": np.array([target]), "initial": np.array([initial])}
    )
    agent.reset(envs.catalog, 1)
    shown, ranks, captions = (
        [int(infos["shown_index"][0])],
        [int(infos["target_rank"][0])],
        [str(infos["feedback_text"][0])],
    )
    for _ in range(max_turns):
        observations, _, terminated, truncated, infos = envs.step(agent.act(observations, infos))
        shown.append(int(infos["shown_index"][0]))
        ranks.append(int(infos["target_rank"][0]))
        captions.append(str(infos["feedback_text"][0]))
        if terminated[0] or truncated[0]:
            break
    return {"catalog": envs.catalog, "target": target, "shown": shown, "ranks": ranks, "captions": captions,
            "agent": agent.name}  # fmt: skip


def _dialog(args: argparse.Namespace) -> int:
    from dialog_env.render.frame import PictureSource
    from dialog_env.render.png import write_png
    from dialog_env.render.sheet import transcript_sheet

    played = play_dialog(args.run, args.episode, args.max_turns, args.eval_seed, args.catalog, args.split)
    pictures = PictureSource(played["catalog"])
    sheet = transcript_sheet(pictures, played["target"], played["shown"], played["ranks"], played["captions"],
                             columns=args.columns, picture_size=args.picture_size)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, sheet)
    found = played["shown"][-1] == played["target"]
    outcome = f"found the target at turn {len(played['shown']) - 1}" if found else "target not found"
    print(f"{played['agent']}: {outcome}; sheet of {len(played['shown'])} turns written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m dialog_env.render", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    draw = commands.add_parser("draw", help="draw every image of a catalogue into a folder of PNG files")
    draw.add_argument("--out", type=Path, required=True, help="folder for <id>.png files")
    draw.add_argument("--catalog", default=None, help="HDF5 catalogue with the shoe attributes (default: synthetic)")
    draw.add_argument("--split", default="all", help="split to draw, or 'all' (default)")
    draw.add_argument("--size", type=int, default=128, choices=(128, 256, 512), help="pixels per side (default 128)")
    draw.add_argument("--overwrite", action="store_true", help="draw again files that exist (default: keep them)")
    draw.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    draw.set_defaults(handler=_draw)
    dialog = commands.add_parser("dialog", help="play one dialog and write its contact sheet")
    dialog.add_argument("--out", type=Path, required=True, help="PNG file to write")
    dialog.add_argument(
        "--run", type=Path, default=None, help="a run of train_agent.py --agent paper (default: random agent)"
    )
    dialog.add_argument("--episode", type=int, default=0, help="which evaluation episode (default 0)")
    dialog.add_argument("--eval-seed", type=int, default=2018, help="seed of the evaluation episodes (default 2018)")
    dialog.add_argument("--max-turns", type=int, default=10, help="turns (default 10)")
    dialog.add_argument("--catalog", default=None, help="catalogue without --run (default: synthetic)")
    dialog.add_argument("--split", default="test", help="split without --run (default test)")
    dialog.add_argument("--columns", type=int, default=6, help="tiles per row (default 6)")
    dialog.add_argument("--picture-size", type=int, default=128, choices=(128, 256), help="pixels per picture")
    dialog.set_defaults(handler=_dialog)
    args = parser.parse_args(argv)
    if args.command == "dialog" and (args.episode < 0 or args.max_turns < 1):
        parser.error("--episode must be >= 0 and --max-turns >= 1")
    try:
        return args.handler(args)
    except DialogEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
