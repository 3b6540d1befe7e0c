"""Command line: ``adaptive-ref list`` (the registry), ``adaptive-ref conform`` (the report) and
``adaptive-ref diagnose`` (which conventions an implementation follows)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import REGISTRY

    for spec in REGISTRY.values():
        print(f"{spec.name:10s} {spec.title:10s} profiles: {', '.join(spec.profiles) or '-'}")
        if args.verbose:
            for h in spec.hparams:
                kind = "knob" if h.knob else "hparam"
                print(f"    {h.name:26s} {kind:6s} default={h.default!r:10s} {h.range_text()}")
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
