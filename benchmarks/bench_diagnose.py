"""Time of ``adaptive_ref.conformance.diagnose`` per optimizer, against the 30 s target.

Not a test: prints one line per implementation and optimizer (seconds, reference runs, the
answer). The cases are those of issue 9: torch RAdam, optax RMSprop, the hand-written NumPy
implementations of ``tests/diagnose_impls.py`` (Adam with eps inside the root, Adam that drops
its weight decay, Keras-like Adam and Nadam, an off-by-one Adam that matches nothing) and, where
its adapter exists, Keras on JAX. A library's first line includes importing it.

    python benchmarks/bench_diagnose.py
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

TARGET_S = 30.0


def main() -> int:
    import diagnose_impls as impls

    from adaptive_ref.conformance import diagnose, get_adapter

    runs = [("torch-forloop", "radam"), ("optax-eager", "rmsprop"),
            (impls.EpsInSqrtAdam(), "adam"), (impls.DropsWeightDecayAdam(), "adam"),
            (impls.KerasLikeAdam(), "adam"), (impls.KerasLikeNadam(), "nadam"),
            (impls.OffByOneAdam(), "adam"), ("keras-jax", "adam"), ("keras-jax", "nadam")]
    slow = 0
    for impl, opt in runs:
        if isinstance(impl, str):
            try:
                impl = get_adapter(impl)
            except KeyError as err:
                print(f"  skipped: {err.args[0].split(';')[0]}")
                continue
            if impl.missing():
                print(f"  skipped {impl.name}: {impl.missing()}")
                continue
        res = diagnose(impl, opt, time_limit=2 * TARGET_S)
        flag = "" if res.seconds <= TARGET_S else f"  OVER the {TARGET_S:g} s target"
        slow += res.seconds > TARGET_S
        print(f"{res.seconds:6.1f} s {res.evaluations:4d} runs  {res.summary()}{flag}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
