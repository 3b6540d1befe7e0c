"""A worker process that drives Keras 3 on one backend for :mod:`.keras_adapter`.

Keras picks its backend once, at import (``KERAS_BACKEND``), so each backend runs in its own
process: the adapter starts this file as a script with the environment set, and sends requests as
length-prefixed pickles on the worker's stdin; replies come back the same way on the original
stdout (file descriptor 1 is pointed at stderr, so that nothing Keras or JAX prints can corrupt
the stream). The file imports neither :mod:`adaptive_ref` nor Keras at the top: Keras is imported
after the environment is in place.

Requests (tuples): ``("build", spec)``, ``("step", grads, lr)``, ``("run", [(grads, lr), ...],
checkpoints)`` (every step of a replayed case, returning ``{step: read()}``), ``("read",)``,
``("read_params",)``, ``("versions",)``, ``("exit",)``. Replies: ``("ok", value)`` or
``("error", text)``. One case is live at a time; ``build`` replaces it.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback


def _read_exact(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def recv(fd: int):
    (n,) = struct.unpack("<Q", _read_exact(fd, 8))
    return pickle.loads(_read_exact(fd, n))


def send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


class Driver:
    """The live case: Keras variables, one optimizer per group of parameters."""

    def __init__(self):
        import keras
        import numpy as np

        self.keras, self.np = keras, np
        self.backend = keras.backend.backend()
        if self.backend == "torch":
            import torch

            torch.set_num_threads(1)

    def versions(self):
        import keras

        out = {"keras": keras.__version__, "backend": self.backend}
        mod = __import__(self.backend)
        out[self.backend] = getattr(mod, "__version__", "?")
        return out

    def build(self, spec):
        keras, np = self.keras, self.np
        dtype = spec["dtype"]
        if self.backend == "jax":
            import jax

            # float64 needs x64; float32 runs without it, as a float32 user runs Keras
            jax.config.update("jax_enable_x64", dtype == "float64")
        keras.config.set_floatx(dtype)
        self.dtype = dtype
        self.vars = {k: keras.Variable(np.asarray(v, dtype=dtype), dtype=dtype, name=f"p_{k}")
                     for k, v in spec["params"].items()}
        cls = getattr(keras.optimizers, spec["optimizer"])
        self.groups = []
        for group in spec["groups"]:
            opt = cls(**group["kwargs"])
            vs = [self.vars[k] for k in group["names"]]
            opt.build(vs)
            self.groups.append((opt, group["names"], vs))
        self.fields = spec["fields"]  # [(keras attribute, canonical name, sign)]
        self.scalar_fields = spec.get("scalar_fields", [])
        return None

    def step(self, grads, lr):
        ops = self.keras.ops
        for opt, names, vs in self.groups:
            if lr is not None:
                opt.learning_rate = float(lr)
            gs = [ops.convert_to_tensor(self.np.asarray(grads[k]), dtype=self.dtype)
                  for k in names]
            opt.apply(gs, vs)
        return None

    def run(self, steps, checkpoints):
        """``step`` for each ``(grads, lr)`` of ``steps``; ``{t: read()}`` at the checkpoints."""
        cps, out = set(checkpoints), {}
        for t, (grads, lr) in enumerate(steps, 1):
            self.step(grads, lr)
            if t in cps:
                out[t] = self.read()
        return out

    def _np(self, x):
        return self.np.array(self.keras.ops.convert_to_numpy(x))

    def read_params(self):
        return {k: self._np(v.value) for k, v in self.vars.items()}

    def read(self):
        state = {}
        for opt, names, vs in self.groups:
            count = int(self._np(opt.iterations))
            for k, v in zip(names, vs, strict=True):
                i = opt._get_variable_index(v)
                out = {"count": count}
                for attr, canon, sign in self.fields:
                    slots = getattr(opt, attr, None)
                    if not slots:
                        continue
                    a = self._np(slots[i].value)
                    out[canon] = -a if sign < 0 else a
                for attr, canon in self.scalar_fields:
                    out[canon] = float(self._np(getattr(opt, attr).value))
                state[k] = out
        return self.read_params(), state


def main() -> int:
    proto_out = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to stderr, not into the protocol stream
    sys.stdout = sys.stderr
    fd_in = sys.stdin.fileno()
    try:
        driver = Driver()
    except Exception:
        send(proto_out, ("error", traceback.format_exc()))
        return 1
    send(proto_out, ("ok", driver.versions()))
    while True:
        try:
            req = recv(fd_in)
        except EOFError:
            return 0
        op, args = req[0], req[1:]
        if op == "exit":
            return 0
        try:
            result = getattr(driver, op)(*args)
        except Exception:
            send(proto_out, ("error", traceback.format_exc(limit=6)))
        else:
            send(proto_out, ("ok", result))


if __name__ == "__main__":
    sys.exit(main())
