"""Keras 3 as an implementation under the ``keras`` profile: ``keras-jax`` and ``keras-torch``.

Keras chooses its backend once per process, at import (``KERAS_BACKEND``), so each adapter drives
Keras in a persistent worker process (:mod:`._keras_worker`, started on the first case and reused;
requests are pickles over a pipe). The worker runs on the CPU (``JAX_PLATFORMS=cpu``,
``KERAS_TORCH_DEVICE=cpu``). A float64 case runs with ``keras.config.set_floatx("float64")`` (and
JAX's x64), so that the learning rate and the other hyperparameters Keras keeps as ``floatx``
variables are float64 too; a float32 case runs with floatx float32, as a float32 user runs Keras:
there the float32 hyperparameters and the float32 ``1 - beta**t`` are part of the profile
(``factor_precision="param"``), not a tolerance.

Each case is built from the canonical settings as ``keras.optimizers.<Class>(...)``, one
optimizer per group of parameters that share their settings (all of them, except in the
per-parameter ``groups`` cases, which Keras has no other way to express). A scheduled lr is
assigned to the optimizer's learning-rate variable before each step, so Keras' decoupled weight
decay uses the step's lr, as Keras does with a schedule.

State fields map to the canonical names (:data:`FIELDS`). Keras' SGD momentum buffer is
``m = mu*m - lr*g``, the negative of the canonical lr-inside buffer: it is reported negated
(exactly). NAdam's ``u_product`` is the canonical ``mu_product``.

The torch backend reimplements some optimizers (``keras/src/backend/torch/optimizers``); where
its convention differs from ``update_step`` the optimizer has a ``keras-torch`` profile, and
``keras-torch`` answers to it instead of ``keras`` (NAdam: EMA weights ``1 - beta`` as Python
floats, where ``update_step`` computes them in the variable dtype).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .base import Adapter, unsupported

__all__ = ["KerasAdapter", "KERAS_CLASSES", "FIELDS"]

KERAS_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
                 "amsgrad": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "Nadam",
                 "adadelta": "Adadelta", "lion": "Lion", "lamb": "Lamb"}

# (Keras optimizer attribute holding one slot per variable, canonical field, sign)
FIELDS = {
    "sgd": [("momentums", "momentum_buffer", -1)],
    "adagrad": [("_accumulators", "sum", 1)],
    "rmsprop": [("_velocities", "nu", 1), ("_average_gradients", "mu", 1),
                ("_momentums", "momentum_buffer", 1)],
    "adam": [("_momentums", "mu", 1), ("_velocities", "nu", 1), ("_velocity_hats", "nu_max", 1)],
    "adamax": [("_m", "mu", 1), ("_u", "nu", 1)],
    "nadam": [("_momentums", "mu", 1), ("_velocities", "nu", 1)],
    "adadelta": [("_accumulated_grads", "nu", 1), ("_accumulated_delta_vars", "acc_delta", 1)],
    "lion": [("_momentums", "mu", 1)],
    "lamb": [("_momentums", "mu", 1), ("_velocities", "nu", 1)],
}
FIELDS["amsgrad"] = FIELDS["adamw"] = FIELDS["adam"]
SCALAR_FIELDS = {"nadam": [("_u_product", "mu_product")]}

# canonical hyperparameter -> Keras constructor argument (everything else is fixed by Keras and
# must equal the keras profile's value)
_ARGS = {
    "sgd": {"lr": "learning_rate", "momentum": "momentum", "nesterov": "nesterov"},
    "adagrad": {"lr": "learning_rate", "initial_accumulator_value": "initial_accumulator_value",
                "eps": "epsilon"},
    "rmsprop": {"lr": "learning_rate", "alpha": "rho", "momentum": "momentum", "eps": "epsilon",
                "centered": "centered"},
    "adam": {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon",
             "amsgrad": "amsgrad"},
    "adamax": {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon"},
    "nadam": {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon"},
    "adadelta": {"lr": "learning_rate", "rho": "rho", "eps": "epsilon"},
    "lion": {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2"},
    "lamb": {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon"},
}
_ARGS["amsgrad"] = _ARGS["adamw"] = _ARGS["adam"]
# schedule-free AdamW (keras.optimizers.ScheduleFreeAdamW): its "momentum" slot is z; it keeps no
# weight sum, no lr_max and no evaluation point x (those fields are not compared)
KERAS_CLASSES["schedule_free_adamw"] = "ScheduleFreeAdamW"
FIELDS["schedule_free_adamw"] = [("_momentums", "z", 1), ("_velocities", "nu", 1)]
_ARGS["schedule_free_adamw"] = {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2",
                                "eps": "epsilon", "warmup_steps": "warmup_steps"}
# Adafactor (keras/src/optimizers/adafactor.py): the factors _r (shape[:-1]) and _c (shape[:-2] +
# shape[-1:]) are reported in the reference's kept-axis shapes; _v is the full v of a vector (a
# matrix's _v holds V_hat, no state of the reference, and is left out). beta_2_decay = -c.
# relative_step is not passed: Keras applies rho_t = min(lr, 1/sqrt(t)) whatever it says
# (finding AF5; the FINDING case passes relative_step=False)
KERAS_CLASSES["adafactor"] = "Adafactor"
FIELDS["adafactor"] = [("_r", "v_row", 1), ("_c", "v_col", 1), ("_v", "v", 1)]
_ARGS["adafactor"] = {"lr": "learning_rate", "decay_rate": "beta_2_decay", "eps1": "epsilon_1",
                      "eps2": "epsilon_2", "clip_threshold": "clip_threshold"}


def _adafactor_fields(params: dict, state: dict) -> dict:
    """Keras' Adafactor slots in the reference's layout (see FIELDS["adafactor"])."""
    for k, fields in state.items():
        shape = tuple(np.shape(params[k]))
        if len(shape) >= 2:
            fields.pop("v", None)
            fields["v_row"] = np.reshape(fields["v_row"], shape[:-1] + (1,))
            fields["v_col"] = np.reshape(fields["v_col"], shape[:-2] + (1, shape[-1]))
        else:
            fields.pop("v_row", None)
            fields.pop("v_col", None)
    return state
# Muon (keras.optimizers.Muon, keras/src/optimizers/muon.py): m <- m + g + m(mu - 1) (sum
# momentum), Nesterov g + mu m or none, the iteration in the variable dtype on x/(||x|| + 1e-7)
# with ops.norm's float32 on the JAX backend (M4), lr_adjust sqrt(max(rows, cols)) rms_rate or
# nothing (rms_rate=None), the base class's decoupled decay
KERAS_CLASSES["muon"] = "Muon"
FIELDS["muon"] = [("momentums", "mu", 1)]
_ARGS["muon"] = {"lr": "learning_rate", "momentum": "momentum", "ns_steps": "ns_steps",
                 "ns_a": "muon_a", "ns_b": "muon_b", "ns_c": "muon_c"}
_MUON_NESTEROV = {"add": True, "none": False}


def _muon_irrelevant(name: str, hp: dict, dtype: str) -> bool:
    """Muon settings that cannot act in this case (so Keras expresses any value of them):
    the bfloat16 rounding knobs above bfloat16, the layout without the fan ratio, the scalar
    factors without a bias correction (Keras has none), the rms constant without rms; and the
    settings _muon_kwargs translates."""
    ns = {"param": dtype}.get(hp.get("ns_dtype", "param"), hp.get("ns_dtype"))
    return (name in ("nesterov", "shape_scale") or (name == "ns_dtype" and ns == dtype)
            or (name in ("ns_rounding", "scale_dtype") and ns != "bfloat16")
            or name == "factor_precision"
            or (name == "norm_precision" and dtype == "float32")
            or (name == "layout" and hp.get("shape_scale") != "fan_ratio")
            or (name == "rms_scale" and hp.get("shape_scale") != "rms"))


def _muon_why_not(hp: dict) -> str | None:
    if hp.get("nesterov") not in _MUON_NESTEROV:
        return f"keras.optimizers.Muon's Nesterov is g + mu*m or none, not {hp['nesterov']!r}"
    if hp.get("shape_scale") not in ("rms", "none"):
        return ("keras.optimizers.Muon scales by rms_rate*sqrt(max(rows, cols)) or not at all "
                "(rms_rate=None), not by the fan ratio")
    return None


def _muon_kwargs(hp: dict) -> dict:
    return {"nesterov": _MUON_NESTEROV[hp["nesterov"]], "ns_steps": int(hp["ns_steps"]),
            "rms_rate": float(hp["rms_scale"]) if hp["shape_scale"] == "rms" else None}


_TIMEOUT_S = 600.0  # one request (a build or a step) taking longer than this is a hang


def _profile(opt: str, backend: str) -> str:
    """The profile a backend answers to: ``keras``, or ``keras-<backend>`` where the backend
    reimplements the optimizer with another convention (the torch backend's Nadam)."""
    from adaptive_ref import registry

    own = f"keras-{backend}"
    return own if own in registry.get(opt).profiles else "keras"


def _why_not(opt: str, hp: dict, dtype: str, backend: str) -> str | None:
    """Why Keras cannot run the settings ``hp`` (None if it can)."""
    from adaptive_ref import registry

    keras = registry.get(opt).profiles[_profile(opt, backend)].settings
    cls = KERAS_CLASSES[opt]
    for name, value in sorted(hp.items()):
        if name in _ARGS[opt] or name == "weight_decay":
            continue
        if name == "factor_precision" and dtype == "float64":
            continue  # 'param' is float64 here: the two values compute the same numbers
        if name in ("weight_decay_mode", "decay_placement") and hp.get("weight_decay", 0.0) == 0:
            continue
        if opt == "muon" and _muon_irrelevant(name, hp, dtype):
            continue
        if name in keras and value != keras[name]:
            return (f"keras.optimizers.{cls} has {name}={keras[name]!r} built in "
                    f"(the case sets {value!r})")
    if opt == "sgd" and hp.get("nesterov") and hp.get("momentum", 0.0) == 0:
        return "keras.optimizers.SGD nesterov needs momentum"
    if opt == "muon":
        return _muon_why_not(hp)
    return None


def _kwargs(opt: str, hp: dict) -> dict:
    kw = {_ARGS[opt][k]: (float(v) if isinstance(v, float | int) and not isinstance(v, bool)
                          else v) for k, v in hp.items() if k in _ARGS[opt]}
    if opt == "amsgrad":
        kw["amsgrad"] = True
    if opt == "adafactor":
        kw["beta_2_decay"] = -kw["beta_2_decay"]
    if opt == "muon":
        kw.update(_muon_kwargs(hp))
    wd = float(hp.get("weight_decay", 0.0))
    # None turns Keras' decay off; AdamW requires a number (0 leaves p unchanged)
    kw["weight_decay"] = wd if wd or opt == "adamw" else None
    return kw


def _contiguous(grads: dict) -> dict:
    return {k: np.array(g, order="C") for k, g in grads.items()}


class _Worker:
    """A Keras process on one backend, with length-prefixed pickles over pipes."""

    def __init__(self, backend: str):
        from ._keras_worker import recv, send

        self._recv, self._send = recv, send
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu",
                   KERAS_TORCH_DEVICE="cpu", TF_CPP_MIN_LOG_LEVEL="3")
        self.log = tempfile.TemporaryFile()
        script = Path(__file__).with_name("_keras_worker.py")
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.versions = self._reply("starting Keras")
        atexit.register(self.close)

    def _reply(self, what: str):
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], _TIMEOUT_S)
        try:
            if not ready:
                raise TimeoutError
            status, value = self._recv(fd)
        except (EOFError, TimeoutError) as err:
            self.close()
            msg = (f"the Keras worker {'hung' if isinstance(err, TimeoutError) else 'died'} "
                   f"while {what}: {self._log_tail()}")
            raise RuntimeError(msg) from None
        if status != "ok":
            msg = f"Keras raised while {what}:\n{value}"
            raise RuntimeError(msg)
        return value

    def _log_tail(self) -> str:
        try:
            self.log.seek(0)
            return self.log.read().decode(errors="replace")[-2000:].strip() or "(no output)"
        except Exception:  # pragma: no cover - the log is gone
            return "(no output)"

    def call(self, op: str, *args):
        if self.proc.poll() is not None:
            msg = f"the Keras worker has exited: {self._log_tail()}"
            raise RuntimeError(msg)
        self._send(self.proc.stdin.fileno(), (op, *args))
        return self._reply(op)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send(self.proc.stdin.fileno(), ("exit",))
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


class KerasAdapter(Adapter):
    profile = "keras"

    def __init__(self, backend: str = "jax"):
        if backend not in ("jax", "torch"):
            msg = f"KerasAdapter: backend must be 'jax' or 'torch', got {backend!r}"
            raise ValueError(msg)
        self.backend = backend
        self.name = f"keras-{backend}"
        self.description = f"keras.optimizers (Keras 3) on the {backend} backend, CPU"
        self._worker: _Worker | None = None
        self._optimizer: str | None = None  # the optimizer of the case built last

    def missing(self):
        for mod, what in (("keras", "Keras 3"), (self.backend, f"its {self.backend} backend")):
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError) as err:  # a broken or blocked install
                found, why = False, f"{type(err).__name__}: {err}"
            else:
                why = f"{mod} not importable"
            if not found:
                return f"{what} is not installed ({why})"
        return None

    def worker(self) -> _Worker:
        if self._worker is None or not self._worker.alive():
            self._worker = _Worker(self.backend)
        return self._worker

    def version(self):
        from importlib.metadata import version

        return version("keras")

    def supports(self, case):
        opt = case.optimizer
        if opt not in KERAS_CLASSES:
            return unsupported(f"Keras 3 has no counterpart of {opt}")
        for p in case.params:
            why = _why_not(opt, case.param_hparams(p.name), case.dtype, self.backend)
            if why:
                return unsupported(why)
        return None

    def applies_to(self, case):
        if case.optimizer not in KERAS_CLASSES:
            return case.profile == self.profile
        return case.profile == _profile(case.optimizer, self.backend)

    def build(self, case):
        opt = case.optimizer
        params = case.init_params()
        groups: dict[tuple, list[str]] = {}
        kwargs = {}
        for k in params:
            kw = _kwargs(opt, case.param_hparams(k))
            if "keras_relative_step_false" in case.tags:  # finding AF5: Keras' own flag
                kw["relative_step"] = False
            key = tuple(sorted(kw.items()))
            groups.setdefault(key, []).append(k)
            kwargs[key] = kw
        spec = {"dtype": case.dtype, "optimizer": KERAS_CLASSES[opt], "params": params,
                "groups": [{"kwargs": kwargs[key], "names": names}
                           for key, names in groups.items()],
                "fields": FIELDS[opt], "scalar_fields": SCALAR_FIELDS.get(opt, [])}
        w = self.worker()
        w.call("build", spec)
        self._optimizer = opt
        return w

    def step(self, w, grads, lr):
        w.call("step", _contiguous(grads), lr)

    def run(self, case):
        """A replayed case in one request: the worker gets every step's gradients and lr and
        returns the checkpoints (the same build, steps and reads as the step-by-step protocol,
        which a closed-loop case still uses: its gradients need the iterate)."""
        if case.kind != "replay":
            return super().run(case)
        w = self.build(case)
        steps = [(_contiguous(case.gradients(t)), case.lr_at(t))
                 for t in range(1, case.steps + 1)]
        out = w.call("run", steps, sorted(set(case.checkpoints)))
        if case.optimizer == "adafactor":
            out = {t: (p, _adafactor_fields(p, s)) for t, (p, s) in out.items()}
        return out

    def read_params(self, w):
        return w.call("read_params")

    def read(self, w):
        params, state = w.call("read")
        if self._optimizer == "adafactor":
            state = _adafactor_fields(params, state)
        return params, state
