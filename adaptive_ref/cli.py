"""Command line: ``adaptive-ref list`` (the registry), ``adaptive-ref conform`` (the report) and
``adaptive-ref diagnose`` (which conventions an implementation follows)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import REGISTRY

    specs = list(REGISTRY.values())
    profiles = {s.name: ", ".join(s.profiles) or "-" for s in specs}
    wn = max(len(x) for x in ["optimizer", *profiles])
    wp = max(len(x) for x in ["profiles", *profiles.values()])
    hps = [h for s in specs for h in s.hparams]
    wh, wd = max(len(h.name) for h in hps), max(len(repr(h.default)) for h in hps)
    print(f"{'optimizer':{wn}s}  {'profiles':{wp}s}  title")
    for spec in specs:
        print(f"{spec.name:{wn}s}  {profiles[spec.name]:{wp}s}  {spec.title}")
        if args.verbose:
            for h in spec.hparams:
                kind = "knob" if h.knob else "hparam"
                print(f"    {h.name:{wh}s}  {kind:6s}  default={h.default!r:{wd}s}  "
                      f"{h.range_text()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptive-ref", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the registered optimizers")
    p_list.add_argument("-v", "--verbose", action="store_true", help="show hyperparameters")
    p_list.set_defaults(func=_cmd_list)
    try:
        from adaptive_ref.conformance.cli import add_conform_parser
    except ImportError:  # pragma: no cover - the conformance package ships with adaptive-ref
        add_conform_parser = None
    if add_conform_parser is not None:
        add_conform_parser(sub)
        from adaptive_ref.conformance.diagnose import add_diagnose_parser

        add_diagnose_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
