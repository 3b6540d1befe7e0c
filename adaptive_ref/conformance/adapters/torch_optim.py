"""torch.optim as an implementation under the ``torch`` profile, one adapter per code path:
``torch-forloop`` (``foreach=False``, the single-tensor path), ``torch-foreach``
(``foreach=True``) and ``torch-fused`` (``fused=True``; SGD, Adagrad, Adam, AdamW only).

Each parameter gets its own param group carrying its hyperparameters (per-group cases); a
scheduled lr is written into every group before each step. float64 cases run with
``torch.set_default_dtype(torch.float64)`` (restored afterwards) so that NAdam's ``mu_product``
and the ``step`` scalars are float64 too; without it NAdam differs by ~2e-7 (a documented
finding, docs/conformance.md).
"""

from __future__ import annotations

import contextlib

import numpy as np

from .base import ABSENT, Adapter, Given, present, unsupported

__all__ = ["TorchAdapter", "TORCH_CLASSES"]

TORCH_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
                 "amsgrad": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam",
                 "radam": "RAdam", "lazy_adam": "SparseAdam", "sparse_adagrad": "Adagrad",
                 "adadelta": "Adadelta"}
SPARSE = {"lazy_adam", "sparse_adagrad"}  # fed sparse COO gradients (single-tensor path only)
FUSED = {"sgd", "adagrad", "adam", "amsgrad", "adamw"}

# canonical hyperparameter -> the value torch's code hard-wires (anything else is unsupported)
_FIXED = {
    "sgd": {"dampen_first_step": False},
    "adagrad": {"eps_placement": "outside"},
    "rmsprop": {"eps_placement": "outside", "nesterov": False, "bias_correction": False,
                "initial_accumulator_value": 0.0},
    "adam": {"eps_root": 0.0, "eps_placement": "outside", "bias_correction": True},
    "adamw": {"eps_root": 0.0, "eps_placement": "outside", "bias_correction": True,
              "decay_scaling": "lr"},
    "adamax": {"eps_placement": "max"},
    "nadam": {},
    "radam": {"eps_root": 0.0, "eps_placement": "hat", "threshold": 5.0,
              "threshold_inclusive": False},
}
_FIXED["amsgrad"] = _FIXED["adam"]
_FIXED["lazy_adam"] = {"eps_placement": "hat", "bias_correction": True, "absent_rows": "lazy"}
_FIXED["sparse_adagrad"] = {"eps_placement": "outside"}
# torch.optim.Adafactor (torch/optim/_adafactor.py): the paper's relative step and parameter
# scale (from the undecayed parameter), beta2_hat from Python floats, the last two axes always
# factored, decoupled decay p (1 - lr wd), eps1 a clamp, no momentum
_FIXED["adafactor"] = {"relative_step": True, "multiply_by_parameter_scale": True,
                       "param_scale_from": "before_decay", "beta2_precision": "float64",
                       "mean_precision": "compute", "decay_scaling": "lr", "beta1": 0.0,
                       "factored": True, "factor_axes": "last_two",
                       "min_dim_size_to_factor": 0.0}
TORCH_CLASSES["adafactor"] = "Adafactor"

# torch.optim.Muon (torch/optim/_muon.py): the EMA buffer (lerp_), Nesterov g.lerp(buf, mu) or
# none, the iteration forced to bfloat16 with X/clamp(||X||, eps) (findings M1, M7), the scale
# sqrt(max(1, A/B)) of the out x in shape or 0.2 sqrt(max(A, B)) (adjust_lr_fn), lr in Python
# floats; one code path (no foreach/fused), its buffer is state["momentum_buffer"] (field mu)
TORCH_CLASSES["muon"] = "Muon"
_FIXED["muon"] = {"momentum_form": "ema", "ns_dtype": "bfloat16", "ns_rounding": "line",
                  "scale_dtype": "param", "eps_form": "clamp", "norm_precision": "ns_dtype",
                  "factor_precision": "float64"}
_SINGLE_PATH = {"muon"}
_STATE_OF = {("muon", "momentum_buffer"): "mu"}
_MUON_ADJUST = {"fan_ratio": "original", "rms": "match_rms_adamw"}


def _muon_kwargs(hp: Given) -> dict:
    return {"lr": hp["lr"], "weight_decay": hp["weight_decay"], "momentum": hp["momentum"],
            "nesterov": hp["nesterov"] == "lerp" if hp["nesterov"] else ABSENT,
            "ns_coefficients": (hp["ns_a"], hp["ns_b"], hp["ns_c"]), "eps": hp["eps"],
            "ns_steps": hp["ns_steps"],
            "adjust_lr_fn": _MUON_ADJUST.get(hp["shape_scale"], ABSENT)
            if hp["shape_scale"] else ABSENT}


def _muon_why_not(hp: dict) -> str | None:
    hp = Given(hp)
    if hp["nesterov"] not in ("lerp", "none", ABSENT):
        return (f"torch.optim.Muon's Nesterov is g.lerp(buf, momentum) or off, not "
                f"{hp['nesterov']!r}")
    if hp["shape_scale"] == "none":
        return "torch.optim.Muon's adjust_lr_fn is 'original' or 'match_rms_adamw' (no unscaled lr)"
    if hp["shape_scale"] == "fan_ratio" and hp["layout"] not in ("out_in", ABSENT):
        return "torch.optim.Muon reads a matrix as out x in (sqrt(max(1, A/B)), finding M2)"
    if hp["shape_scale"] == "rms" and hp["rms_scale"] not in (0.2, ABSENT):
        return "torch.optim.Muon's match_rms_adamw has the constant 0.2 built in"
    return None

_STATE = {"exp_avg": "mu", "exp_avg_sq": "nu", "max_exp_avg_sq": "nu_max", "sum": "sum",
          "square_avg": "nu", "grad_avg": "mu", "momentum_buffer": "momentum_buffer",
          "exp_inf": "nu", "mu_product": "mu_product", "step": "count",
          "exp_avg_var": "nu",  # adabelief-pytorch (adapters/adabelief_pytorch.py)
          "acc_delta": "acc_delta",
          "row_var": "v_row", "col_var": "v_col", "variance": "v"}  # Adafactor


def _kwargs(opt: str, hp: dict) -> dict:
    """torch keyword arguments for the canonical settings ``hp`` (those ``hp`` does not name are
    left at torch's defaults)."""
    hp = Given(hp)
    kw = {"lr": hp["lr"], "maximize": hp["maximize"]}
    if opt == "lazy_adam":
        kw.update(betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    elif opt == "sparse_adagrad":
        kw.update(lr_decay=hp["lr_decay"], eps=hp["eps"],
                  initial_accumulator_value=hp["initial_accumulator_value"])
    elif opt == "sgd":
        kw.update(momentum=hp["momentum"], dampening=hp["dampening"],
                  weight_decay=hp["weight_decay"], nesterov=hp["nesterov"])
    elif opt == "adagrad":
        kw.update(lr_decay=hp["lr_decay"], weight_decay=hp["weight_decay"],
                  initial_accumulator_value=hp["initial_accumulator_value"], eps=hp["eps"])
    elif opt == "rmsprop":
        kw.update(alpha=hp["alpha"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                  momentum=hp["momentum"], centered=hp["centered"])
    elif opt in ("adam", "amsgrad", "adamw"):
        kw.update(betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                  weight_decay=hp["weight_decay"], amsgrad=hp["amsgrad"])
        if opt != "adamw":
            kw["decoupled_weight_decay"] = hp["weight_decay_mode"] == "decoupled"
    elif opt == "adamax":
        kw.update(betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                  weight_decay=hp["weight_decay"])
    elif opt == "nadam":
        # momentum_schedule='constant' is torch's momentum_decay -> infinity: 0.96**(1e9 t)
        # underflows to 0, so mu_t = beta1 exactly (the knob that reconciles torch with optax).
        psi = 1e9 if hp["momentum_schedule"] == "constant" else hp["momentum_decay"]
        kw.update(betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                  weight_decay=hp["weight_decay"], momentum_decay=psi,
                  decoupled_weight_decay=hp["weight_decay_mode"] == "decoupled")
    elif opt == "radam":
        kw.update(betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                  weight_decay=hp["weight_decay"],
                  decoupled_weight_decay=hp["weight_decay_mode"] == "decoupled")
    elif opt == "adadelta":
        kw.update(rho=hp["rho"], eps=hp["eps"], weight_decay=hp["weight_decay"])
    elif opt == "adafactor":
        # eps=(eps1, eps2): eps1 None is the machine epsilon (eps1_mode='clamp_machine_eps')
        e1 = None if hp["eps1_mode"] == "clamp_machine_eps" else hp["eps1"]
        kw.update(beta2_decay=-hp["decay_rate"], d=hp["clip_threshold"],
                  weight_decay=hp["weight_decay"])
        if e1 is not ABSENT and hp["eps2"] is not ABSENT:
            kw["eps"] = (e1, hp["eps2"])
    elif opt == "muon":
        kw = _muon_kwargs(hp)
    return present(kw)


_COUPLED_ONLY = {"sgd", "adagrad", "rmsprop", "adamax", "sparse_adagrad", "adadelta"}


def _why_not(opt: str, hp: dict, dtype: str = "float64") -> str | None:
    for name, value in _FIXED.get(opt, {}).items():
        if name in hp and hp[name] != value:
            return f"torch.optim.{TORCH_CLASSES[opt]} has {name}={value!r} built in"
    if dtype != "float64":
        if hp.get("factor_precision", "float64") != "float64":
            return ("torch computes the scalar factors (1 - beta^t, ...) in Python float64 "
                    "(factor_precision='float64')")
        if hp.get("ema_weight_precision", "float64") != "float64":
            return "torch's EMA weights 1 - beta are Python floats (ema_weight_precision='float64')"
    if opt == "muon":
        return _muon_why_not(hp)
    if opt in _COUPLED_ONLY and hp.get("weight_decay_mode", "coupled") != "coupled" \
            and hp.get("weight_decay", 0.0) != 0:
        return f"torch.optim.{TORCH_CLASSES[opt]} has coupled L2 weight decay only"
    if opt == "adafactor":
        if hp.get("eps1_mode", "clamp_machine_eps") == "add":
            return "torch.optim.Adafactor clamps with eps1 (eps1_mode='clamp'), it does not add it"
        if hp.get("weight_decay_mode", "decoupled") != "decoupled" and hp.get("weight_decay"):
            return "torch.optim.Adafactor has decoupled weight decay only"
    hp = Given(hp)
    if opt == "sgd" and hp["momentum"] and hp["lr_placement"] not in ("outside", ABSENT):
        return "torch.optim.SGD keeps lr outside the momentum buffer"
    if opt == "rmsprop" and hp["momentum"] and hp["lr_placement"] not in ("outside", ABSENT):
        return "torch.optim.RMSprop keeps lr outside the momentum buffer"
    if opt in ("amsgrad", "adam", "adamw") and hp.get("amsgrad") and \
            hp["amsgrad_max_over"] not in ("raw", ABSENT):
        return "torch AMSGrad takes the maximum over the raw v"
    return None


@contextlib.contextmanager
def one_thread():
    """One torch intra-op thread inside the block, the old count restored after: a case's
    tensors are tiny, and on a loaded machine torch's thread pool costs 10-20x the arithmetic
    (measured)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class TorchAdapter(Adapter):
    profile = "torch"

    def __init__(self, mode: str = "forloop"):
        self.mode = mode
        self.name = f"torch-{mode}"
        self.description = {"forloop": "torch.optim, foreach=False (single-tensor path)",
                            "foreach": "torch.optim, foreach=True (multi-tensor path)",
                            "fused": "torch.optim, fused=True"}[mode]

    def missing(self):
        try:
            import torch  # noqa: F401
        except Exception as err:
            return f"torch is not installed ({type(err).__name__})"
        return None

    def version(self):
        import torch

        return torch.__version__

    def supports(self, case):
        opt = case.optimizer
        if opt not in TORCH_CLASSES:
            return unsupported(f"torch.optim has no counterpart of {opt}")
        if opt in SPARSE and self.mode != "forloop":
            return unsupported("sparse gradients take torch's single-tensor path only")
        if self.mode != "forloop" and opt in _SINGLE_PATH:
            return unsupported(f"torch.optim.{TORCH_CLASSES[opt]} has one code path (the "
                               f"single-tensor one: torch-forloop)")
        if self.mode == "fused" and opt not in FUSED:
            return unsupported(f"torch.optim.{TORCH_CLASSES[opt]} has no fused implementation")
        for p in case.params:
            why = _why_not(opt, case.param_hparams(p.name), case.dtype)
            if why:
                return unsupported(why)
        return None

    def run(self, case):
        with one_thread():
            return super().run(case)

    @contextlib.contextmanager
    def _dtype(self, case):
        import torch

        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64 if case.dtype == "float64" else torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(old)

    def build(self, case):
        import torch

        cls = getattr(torch.optim, TORCH_CLASSES[case.optimizer])
        params = {k: torch.nn.Parameter(torch.from_numpy(v.copy()))
                  for k, v in case.init_params().items()}
        groups = []
        for k, p in params.items():
            kw = _kwargs(case.optimizer, case.param_hparams(k))
            groups.append({"params": [p], **kw})
        path = {"foreach": False} if self.mode == "forloop" else (
            {"foreach": True} if self.mode == "foreach" else {"fused": True})
        if case.optimizer == "lazy_adam" or case.optimizer in _SINGLE_PATH:
            path = {}  # SparseAdam and Muon have a single code path
        # Constructor-level settings too: torch.optim.Adagrad reads initial_accumulator_value
        # from the constructor only and ignores a per-group value (a finding, docs/conformance.md).
        top = {k: v for k, v in _kwargs(case.optimizer, case.hparams).items()
               if k == "initial_accumulator_value"}
        with self._dtype(case):
            opt = cls(groups, **top, **path)
        return {"case": case, "params": params, "opt": opt}

    def step(self, h, grads, lr):
        import torch

        h["t"] = h.get("t", 0) + 1
        sparse = {p.name: p.grad for p in h["case"].params
                  if p.grad is not None and p.grad.get("row_fraction") is not None}
        for k, g in grads.items():
            if k in sparse:  # a coalesced sparse COO gradient holding the active rows
                from ..rng import active_rows

                rows = active_rows(sparse[k], g.shape, h["t"])
                h["params"][k].grad = torch.sparse_coo_tensor(
                    torch.from_numpy(rows.astype(np.int64))[None, :],
                    torch.from_numpy(np.array(g[rows], order="C")), g.shape,
                    check_invariants=True).coalesce()
                continue
            h["params"][k].grad = torch.from_numpy(np.array(g, order="C"))
        if lr is not None:
            for group in h["opt"].param_groups:
                group["lr"] = lr
        with self._dtype(h["case"]):
            if sparse:
                # torch's sparse Adagrad builds COO tensors internally; opting out explicitly
                # (our own gradient was built with check_invariants=True) avoids its warning.
                with torch.sparse.check_sparse_tensor_invariants(enable=False):
                    h["opt"].step()
            else:
                h["opt"].step()

    def read_params(self, h):
        return {k: p.detach().numpy().copy() for k, p in h["params"].items()}

    def read(self, h):
        state = {}
        for k, p in h["params"].items():
            st = h["opt"].state.get(p, {})
            out = {}
            for name, v in st.items():
                canon = _STATE_OF.get((h["case"].optimizer, name), _STATE.get(name))
                if canon is None or v is None:
                    continue
                a = v.detach().numpy().copy() if hasattr(v, "detach") else np.asarray(v)
                out[canon] = int(a) if canon == "count" else (
                    float(a) if canon == "mu_product" else a)
            state[k] = out
        return self.read_params(h), state
