"""optax as an implementation under the ``optax`` profile: ``optax-eager`` (the update called
op by op) and ``optax-jit`` (the whole step under ``jax.jit``).

Each case is built as an optax chain from the canonical settings:
``[scale(-1) if maximize] + [add_decayed_weights if coupled L2] + scaler + [add_decayed_weights
if decoupled] + scale_by_learning_rate`` (SGD, Adagrad and RMSprop use their aliases, which
contain the lr scaling). A scheduled lr becomes an optax schedule over the step count; torch's
Adagrad ``lr_decay`` is the schedule ``lr / (1 + count * lr_decay)``. Each parameter gets its
own transformation (per-group cases). float64 cases enable ``jax_enable_x64``.
"""

from __future__ import annotations

import numpy as np

from ..fidelity import DECOUPLED_ONLY
from ..fidelity import SCHEDULE_FREE as _SCHEDULE_FREE
from .base import ABSENT, Adapter, Given, present, unsupported

__all__ = ["OptaxAdapter"]

_FIELDS = {"mu": "mu", "nu": "nu", "nu_max": "nu_max", "sum_of_squares": "sum",
           "trace": "momentum_buffer", "e_g": "nu", "e_x": "acc_delta"}


def _why_not(opt: str, hp: dict, scheduled: bool, dtype: str = "float64") -> str | None:
    def need(name, value, why):
        return None if hp.get(name, value) == value else why

    hp = Given(hp)  # settings the case does not name stay at optax's defaults
    checks = []
    if opt in ("lazy_adam", "sparse_adagrad"):
        return "optax has no sparse-gradient optimizer"
    if dtype != "float64":
        checks.append(need("factor_precision", "param", "optax computes the scalar factors "
                           "(1 - b**t, rho_t) in the parameter dtype (factor_precision='param')"))
        if opt == "adopt":
            checks.append(need("ema_weight_precision", "param", "optax.contrib.adopt's EMA "
                               "weights 1 - b are formed from b = jnp.where(count > 0, b, ...) in "
                               "the parameter dtype (ema_weight_precision='param')"))
        else:
            checks.append(need("ema_weight_precision", "float64", "optax's EMA weights 1 - b "
                               "are Python floats (ema_weight_precision='float64')"))
    if opt in ("sgd", "adagrad", "rmsprop") and hp.get("weight_decay", 0.0) != 0:
        checks.append(need("weight_decay_mode", "coupled", f"decoupled weight decay is not "
                           f"expressed by this adapter's optax.{opt} chain"))
    if opt == "sgd":
        checks += [need("dampening", 0.0, "optax.sgd has no dampening")]
        if hp["momentum"] and scheduled:
            checks.append(need("lr_placement", "outside", "optax.sgd keeps lr outside the trace"))
    elif opt == "adagrad":
        checks.append(need("eps_placement", "inside", "optax.adagrad puts eps inside the root"))
        if hp["lr_decay"] and scheduled:
            checks.append("lr_decay together with an lr schedule")
    elif opt == "rmsprop":
        if hp["momentum"]:
            checks.append(need("lr_placement", "inside",
                               "optax.rmsprop applies momentum after the lr scaling"))
        elif hp["nesterov"]:  # ABSENT is falsy
            checks.append("optax.rmsprop nesterov needs momentum")
    elif opt in ("adam", "amsgrad", "adamw"):
        checks += [need("eps_placement", "outside", "optax puts eps on sqrt(v_hat)"),
                   need("bias_correction", True, "optax.scale_by_adam always bias-corrects")]
        if hp.get("amsgrad"):
            checks.append(need("amsgrad_max_over", "corrected",
                               "optax.amsgrad takes the maximum over the bias-corrected v_hat"))
        if opt == "adamw":
            checks.append(need("decay_scaling", "lr", "optax.adamw multiplies the decay by lr"))
    elif opt == "adamax":
        checks.append(need("eps_placement", "max", "optax.adamax puts eps inside the max"))
    elif opt == "nadam":
        checks.append(need("momentum_schedule", "constant",
                           "optax.nadam has no momentum schedule (constant b1)"))
    elif opt == "radam":
        checks += [need("eps_placement", "outside", "optax.radam puts eps on sqrt(v_hat)"),
                   need("threshold_inclusive", True, "optax.radam rectifies when rho >= 5")]
    elif opt in _NEWER:
        checks += _NEWER[opt](hp, need)
    elif opt in _SCHEDULE_FREE:
        checks += _schedule_free_why_not(hp, need, scheduled)
    elif opt in _TRUST:
        checks += _trust_why_not(opt, need)
    elif opt == "prodigy":
        checks += _prodigy_why_not(hp, need)
    elif opt == "dadapt_adamw":
        checks += _dadapt_adamw_why_not(hp, need)
    elif opt == "muon":
        checks += _muon_why_not(hp, need, dtype)
    elif opt not in ("adadelta", "lion"):
        return f"optax has no counterpart of {opt}"
    for c in checks:
        if c:
            return c
    return None


def _adopt_checks(hp, need) -> list:
    out = [need("eps_placement", "max", "optax.contrib.adopt puts eps inside the max")]
    if hp.get("weight_decay", 0.0):
        out.append(need("weight_decay_mode", "coupled", "optax.contrib.adopt has no weight "
                        "decay, and add_decayed_weights after it would also decay on the "
                        "update-free first step"))
    return out


def _adabelief_checks(hp, need) -> list:
    out = [need("rectify", False, "optax.adabelief has no rectification"),
           need("eps_placement", "outside", "optax.adabelief puts eps on sqrt(s_hat)")]
    if hp.get("weight_decay", 0.0) and hp.get("weight_decay_mode") == "decoupled":
        out.append(need("decay_scaling", "lr", "add_decayed_weights before the lr scaling "
                        "multiplies the decay by lr"))
    return out


_NEWER = {"adopt": _adopt_checks, "adabelief": _adabelief_checks}  # issue 11 (+ adan below)


def _newer_scaler(opt: str, hp):
    """optax's scaler for the optimizers of issue 11 (``hp``: a :class:`Given`)."""
    import optax

    b = present(dict(b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"]))
    if opt == "adabelief":
        return optax.scale_by_belief(**b, **present({"eps_root": hp["eps_root"],
                                                      "nesterov": hp["nesterov"]}))
    kw = present({"nesterov": hp["nesterov"], "use_clipping": hp["clipping"]})
    if hp["clip_exponent"] is not ABSENT or hp["clip_index"] is not ABSENT:
        e = 0.25 if hp["clip_exponent"] is ABSENT else hp["clip_exponent"]
        shift = 1 if hp["clip_index"] == "current" else 0  # count = the steps taken before
        kw["clip_value_fn"] = lambda count: (count + shift) ** e
    return optax.contrib.scale_by_adopt(**b, **kw)


# ---- per-tensor trust ratios: optax.lamb and optax.lars (chains of scale_by_trust_ratio) ----
_TRUST = ("lamb", "lars")


def _trust_why_not(opt: str, need) -> list:
    out = [need("zero_norm", "one", "optax.scale_by_trust_ratio sets the ratio to 1 where a "
                "norm is 0")]
    if opt == "lamb":
        out.append(need("decay_placement", "trust", "optax.lamb adds the decay to r, inside "
                        "the trust ratio"))
    else:
        out += [need("trust_denominator", "update", "optax.lars divides by ||g + wd*theta|| "
                     "+ eps"),
                need("lr_placement", "inside", "optax.lars traces after "
                     "scale_by_learning_rate (the buffer holds the lr)")]
    return out


def _trust_transform(opt: str, hp, lr):
    import optax

    if opt == "lamb":
        return optax.lamb(lr, **present(dict(
            b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"], eps_root=hp["eps_root"],
            weight_decay=hp["weight_decay"])))
    return optax.lars(lr, **present(dict(
        weight_decay=hp["weight_decay"], trust_coefficient=hp["trust_coefficient"],
        eps=hp["eps"], momentum=hp["momentum"], nesterov=hp["nesterov"])))


def _transform(opt: str, hp: dict, schedule):
    import jax.numpy as jnp
    import optax

    if opt in _SCHEDULE_FREE:
        return _schedule_free_transform(opt, hp)
    lr = hp["lr"] if schedule is None else schedule
    hp = Given(hp)  # settings the case does not name stay at optax's defaults (present drops them)
    if opt == "adan":
        return _adan_transform(hp, lr)
    if opt in _TRUST:
        return _trust_transform(opt, hp, lr)
    if opt == "adafactor":
        return _adafactor_transform(hp, lr)
    if opt == "muon":
        return _muon_transform(hp, lr)
    pre, post = [], []
    if hp.get("maximize"):
        pre.append(optax.scale(-1.0))
    wd = hp.get("weight_decay", 0.0)
    decoupled = opt in DECOUPLED_ONLY or hp.get("weight_decay_mode") == "decoupled"
    if wd and not decoupled:
        pre.append(optax.add_decayed_weights(wd))
    if opt == "sgd":
        core = optax.sgd(lr, momentum=hp["momentum"] or None,
                         **present({"nesterov": hp["nesterov"]}))
    elif opt == "adagrad":
        if hp["lr_decay"]:
            lr0, d = hp["lr"], hp["lr_decay"]
            lr = lambda count: lr0 / (1.0 + jnp.asarray(count) * d)  # noqa: E731
        core = optax.adagrad(lr, **present({
            "initial_accumulator_value": hp["initial_accumulator_value"], "eps": hp["eps"]}))
    elif opt == "rmsprop":
        place = hp["eps_placement"]
        core = optax.rmsprop(lr, momentum=hp["momentum"] or None, **present(dict(
            decay=hp["alpha"], eps=hp["eps"], initial_scale=hp["initial_accumulator_value"],
            eps_in_sqrt=place if place is ABSENT else place == "inside",
            centered=hp["centered"], nesterov=hp["nesterov"],
            bias_correction=hp["bias_correction"])))
    else:
        b = present(dict(b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"]))
        root = present({"eps_root": hp["eps_root"]})
        if opt in ("adam", "amsgrad", "adamw"):
            scaler = (optax.scale_by_amsgrad(**b, **root) if hp["amsgrad"]
                      else optax.scale_by_adam(**b, **root))
        elif opt == "adamax":
            scaler = optax.scale_by_adamax(**b)
        elif opt == "nadam":
            scaler = optax.scale_by_adam(**b, nesterov=True)
        elif opt in _NEWER:
            scaler = _newer_scaler(opt, hp)
        elif opt == "adadelta":
            scaler = optax.scale_by_adadelta(**present(dict(rho=hp["rho"], eps=hp["eps"])))
        elif opt == "lion":
            scaler = optax.scale_by_lion(**present(dict(b1=hp["beta1"], b2=hp["beta2"])))
        else:  # radam
            scaler = optax.scale_by_radam(**b, **root,
                                          **present({"threshold": hp["threshold"]}))
        if wd and decoupled:
            post.append(optax.add_decayed_weights(wd))
        core = optax.chain(scaler, *post, optax.scale_by_learning_rate(lr))
    return optax.chain(*pre, core)


def _default_lr_alias(opt: str, hp: dict):
    """``optax.<opt>(...)`` called as a user who leaves ``learning_rate`` at its default (None)
    does; the case's lr and maximize are the reference's description of what that does."""
    import optax

    assert opt == "adadelta", opt
    return optax.adadelta(rho=hp["rho"], eps=hp["eps"], weight_decay=hp["weight_decay"])


# ---- schedule-free AdamW and SGD: optax.contrib.schedule_free_{adamw,sgd} ---------------------
def _schedule_free_why_not(hp, need, scheduled: bool) -> list:
    warm = bool(hp["warmup_steps"])  # ABSENT (optax's default: none) is falsy
    return [
        "optax.contrib.schedule_free reads an lr schedule at step_count = k + 1 for the weights "
        "and at count = k for the step, so the case's per-step lr (lr_k for both) cannot be "
        "given to it" if scheduled else None,
        need("r", 0.0, "optax's schedule_free has no polynomial weighting (r = 0)"),
        need("averaging", "lr_max", "optax averages with weights max_lr**weight_lr_power"),
        need("x_from_updated_z", False, "optax recovers x from the z before the update"),
        need("weight_decay_form", "direction",
             "optax adds wd*y to the step direction (add_decayed_weights)"),
        need("warmup_lag", True, "optax's warm-up is lagged by one step for z") if warm
        else None,
        need("warmup_precision", "float32", "optax's warmup_constant_schedule is float32")
        if warm else None,
    ]


def _schedule_free_transform(opt: str, hp: dict):
    from optax import contrib

    hp = Given(hp)
    kw = present(dict(learning_rate=hp["lr"], b1=hp["beta1"],
                      weight_lr_power=hp["weight_lr_power"]))
    if hp["warmup_steps"]:
        kw["warmup_steps"] = int(hp["warmup_steps"])
    wd = hp.get("weight_decay", 0.0)
    if opt == "schedule_free_adamw":
        return contrib.schedule_free_adamw(**kw, **present(dict(
            b2=hp["beta2"], eps=hp["eps"], weight_decay=wd)))
    return contrib.schedule_free_sgd(**kw, weight_decay=wd or None)


def _schedule_free_fields(state, params) -> dict:
    """z, the weight sum, max_lr (lr_max) and the evaluation point x of a ScheduleFreeState."""
    from optax import contrib

    x = contrib.schedule_free_eval_params(state, params)
    return {"z": np.asarray(state.z), "weight_sum": float(np.asarray(state.weight_sum)),
            "lr_max": float(np.asarray(state.max_lr)), "x": np.asarray(x),
            "count": int(np.asarray(state.step_count)) - 1}


def _state_fields(state) -> dict:
    """Canonical fields from an optax state tree (first occurrence wins)."""
    out = {}

    def walk(s):
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            names = s._fields
            if any(f in _FIELDS for f in names):
                for f in names:
                    if f in _FIELDS and _FIELDS[f] not in out:
                        out[_FIELDS[f]] = np.asarray(getattr(s, f))
                if "count" in names and "count" not in out:
                    out["count"] = int(np.asarray(s.count))
                return
        if isinstance(s, (tuple, list)):
            for x in s:
                walk(x)

    walk(state)
    return out


class OptaxAdapter(Adapter):
    profile = "optax"

    def __init__(self, jit: bool = False):
        self.jit = jit
        self.name = "optax-jit" if jit else "optax-eager"
        self.description = "optax, update under jax.jit" if jit else "optax, eager update"

    def missing(self):
        try:
            import optax  # noqa: F401
        except Exception as err:
            return f"optax is not installed ({type(err).__name__})"
        return None

    def version(self):
        import optax

        return optax.__version__

    def supports(self, case):
        for p in case.params:
            why = _why_not(case.optimizer, case.param_hparams(p.name),
                           case.lr_schedule is not None, case.dtype)
            if why:
                return unsupported(why)
        return None

    def run(self, case):
        # float64 cases need jax_enable_x64; float32 cases run with it *off*, as a float32 user
        # runs optax (with x64 on, optax's Python-float scalars such as b2**count would be
        # computed in float64). The setting is restored afterwards.
        import jax

        old = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", case.dtype == "float64")
        try:
            return super().run(case)
        finally:
            jax.config.update("jax_enable_x64", old)
            if case.optimizer == "muon" and not self.jit:
                # eagerly, optax.contrib.muon compiles its Newton-Schulz fori_loop on every
                # update (a new lambda per call): ~0.3 s per update, and every compiled copy
                # stays in JAX's caches (a whole Muon run exhausted the memory)
                jax.clear_caches()

    def build(self, case):
        import jax
        import jax.numpy as jnp

        schedule = None
        if case.lr_schedule is not None:
            table = jnp.asarray(np.asarray(case.lr_schedule, dtype=np.float64), dtype=case.dtype)
            schedule = lambda count: table[count]  # noqa: E731
        params = {k: jnp.asarray(v) for k, v in case.init_params().items()}
        if case.optimizer in _WHOLE_MODEL:  # one transformation of the whole model
            return _WHOLE_MODEL[case.optimizer][0](case, params, schedule, self.jit)
        # "_dtype": the case dtype, for the accumulators optax would otherwise make float32
        txs = {k: _transform(case.optimizer, {**case.param_hparams(k), "_dtype": case.dtype},
                             schedule) for k in params}
        if "optax_default_lr_none" in case.tags:  # the finding: optax's own default lr
            txs = {k: _default_lr_alias(case.optimizer, case.param_hparams(k)) for k in params}
        states = {k: txs[k].init(params[k]) for k in params}

        def update(params, states, grads):
            new_p, new_s = {}, {}
            for k in params:
                u, new_s[k] = txs[k].update(grads[k], states[k], params[k])
                new_p[k] = params[k] + u
            return new_p, new_s

        fn = jax.jit(update) if self.jit else update
        return {"params": params, "states": states, "update": fn, "dtype": case.dtype,
                "optimizer": case.optimizer,
                "hp": {k: case.param_hparams(k) for k in params}}

    def step(self, h, grads, lr):
        import jax.numpy as jnp

        # under jit the NumPy arrays go straight into the call (jit moves them to the device
        # itself); the eager update needs JAX arrays, else its first operations ran in NumPy
        g = dict(grads) if self.jit else {k: jnp.asarray(v) for k, v in grads.items()}
        h["params"], h["states"] = h["update"](h["params"], h["states"], g)

    def read_params(self, h):
        return {k: np.asarray(v) for k, v in h["params"].items()}

    def read(self, h):
        if h["optimizer"] in _WHOLE_MODEL:
            fields = _WHOLE_MODEL[h["optimizer"]][1]
            return self.read_params(h), fields(h["states"], list(h["params"]))
        fields_of = {"adan": _adan_state, "muon": _muon_state}.get(h["optimizer"],
                                                                  _state_fields)
        state = {k: fields_of(s) for k, s in h["states"].items()}
        if h["optimizer"] == "adafactor":
            state = {k: _adafactor_state(s, h["params"][k], h["hp"][k])
                     for k, s in h["states"].items()}
        if h["optimizer"] in _SCHEDULE_FREE:
            for k, s in h["states"].items():
                state[k].update(_schedule_free_fields(s, h["params"][k]))
        if h["optimizer"] in ("rmsprop", "lars"):
            # optax.rmsprop's (and optax.lars's) trace runs after scale_by_learning_rate, so it
            # holds the *signed* step (-lr * u); the canonical buffer holds +lr * u.
            for fields in state.values():
                if "momentum_buffer" in fields:
                    fields["momentum_buffer"] = -fields["momentum_buffer"]
        return self.read_params(h), state


# ---- Adan (optax.adan: optax/_src/alias.py adan, optax/_src/transform.py scale_by_adan) -------

def _adan_why_not(hp, need) -> list:
    out = [need("diff_coefficient", "1-beta2", "optax.adan weights the gradient difference by "
                "1 - b2 in n and in the update (finding A1)")]
    if hp.get("weight_decay", 0.0):
        out.append(need("weight_decay_mode", "decoupled", "optax.adan decays p - lr (u + wd p) "
                        "(weight_decay_mode='decoupled'), not proximally"))
    return out


def _adan_transform(hp, lr):
    """optax.adan itself (scale_by_adan, add_decayed_weights, scale_by_learning_rate)."""
    import optax

    return optax.adan(lr, **present(dict(
        b1=hp["beta1"], b2=hp["beta2"], b3=hp["beta3"], eps=hp["eps"], eps_root=hp["eps_root"],
        weight_decay=hp["weight_decay"])))


def _adan_state(state) -> dict:
    """The canonical fields of optax's ScaleByAdanState (m, v, n, g = the previous gradient, t)."""
    s = state[0]  # the chain's first member: scale_by_adan's state
    return {"m": np.asarray(s.m), "v": np.asarray(s.v), "n": np.asarray(s.n),
            "prev_grad": np.asarray(s.g), "count": int(np.asarray(s.t))}


_NEWER["adan"] = _adan_why_not


# ---- Adafactor (optax.adafactor: optax/_src/alias.py adafactor, factorized.py) -----------------
# chain(scale_by_factored_rms, clip_by_block_rms(d), scale_by_learning_rate(lr, flip_sign=False),
# scale_by_param_block_rms(), ema(momentum), add_decayed_weights(wd), scale(-1)); coupled L2 is
# add_decayed_weights(wd) chained before it, maximize scale(-1) before that.

def _adafactor_why_not(hp, need) -> list:
    out = [need("relative_step", False, "optax.adafactor has no relative step (rho_t = lr)"),
           need("eps1_mode", "add", "optax.adafactor adds eps to G^2"),
           need("beta2_precision", "float32", "optax computes beta2_hat_t = 1 - t^-c in "
                "float32 (factorized.py _decay_rate_pow; finding AF2)"),
           need("mean_precision", "compute", "optax takes its means in the parameter dtype"),
           need("param_scale_from", "before_decay", "optax scales by the RMS of the "
                "undecayed parameter"),
           need("factor_axes", "two_largest", "optax factors the two largest axes"),
           need("eps2", 1e-3, "optax.adafactor's scale_by_param_block_rms has min_scale 1e-3 "
                "built in")]
    if hp.get("weight_decay", 0.0) and hp.get("weight_decay_mode") == "decoupled":
        out.append(need("decay_scaling", "none", "optax.adafactor adds wd*theta after the lr "
                        "scaling: theta (1 - wd), not multiplied by lr"))
    return out


_NEWER["adafactor"] = _adafactor_why_not


def _adafactor_transform(hp, lr):
    """optax.adafactor itself (with coupled L2 and maximize chained before it)."""
    import optax

    wd = hp.get("weight_decay", 0.0)
    coupled = hp.get("weight_decay_mode") == "coupled"
    d = hp["clip_threshold"]
    b1 = hp["beta1"]
    core = optax.adafactor(lr, **present(dict(
        min_dim_size_to_factor=(int(hp["min_dim_size_to_factor"])
                                if hp["min_dim_size_to_factor"] is not ABSENT else ABSENT),
        decay_rate=hp["decay_rate"], eps=hp["eps1"], factored=hp["factored"],
        multiply_by_parameter_scale=hp["multiply_by_parameter_scale"],
        weight_decay_rate=(wd or None) if not coupled else None)),
        clipping_threshold=None if d is not ABSENT and d == float("inf") else (
            1.0 if d is ABSENT else d),
        # the momentum accumulator in the parameter dtype (optax's default float32 is finding
        # AF7, not a knob)
        momentum=b1 or None, dtype_momentum=hp["_dtype"])
    pre = []
    if hp.get("maximize"):
        pre.append(optax.scale(-1.0))
    if wd and coupled:
        pre.append(optax.add_decayed_weights(wd))
    return optax.chain(*pre, core)


def _adafactor_state(state, param, hp) -> dict:
    """v_row / v_col reshaped to the reference's kept-axis shapes (optax drops the averaged
    axis), or v; the momentum (ema) as mu; optax's (1,) placeholders left out."""
    from ...optimizers.adafactor import factored_axes

    out = {}

    def walk(s):
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            if "v_row" in s._fields:
                out["count"] = int(np.asarray(s.count))
                out.update(v_row=np.asarray(s.v_row), v_col=np.asarray(s.v_col),
                           v=np.asarray(s.v))
            elif "ema" in s._fields:
                out["mu"] = np.asarray(s.ema)
            return
        if isinstance(s, (tuple, list)):
            for x in s:
                walk(x)

    walk(state)
    shape = tuple(np.shape(param))
    axes = factored_axes(shape, factored=hp["factored"], factor_axes="two_largest",
                         min_dim_size_to_factor=int(hp["min_dim_size_to_factor"]))
    if axes is None:
        out.pop("v_row", None)
        out.pop("v_col", None)
    else:
        out.pop("v", None)
        for f, a in (("v_row", axes[0]), ("v_col", axes[1])):
            out[f] = out[f].reshape(tuple(1 if i == a else n for i, n in enumerate(shape)))
    return out

# ---- Prodigy (optax/contrib/_prodigy.py prodigy): one transformation of the whole model -----

def _prodigy_why_not(hp, need) -> list:
    return [need("bias_correction", True, "optax.contrib.prodigy always applies Adam's bias "
                 "correction in dlr"),
            need("growth_rate", float("inf"), "optax.contrib.prodigy has no growth_rate"),
            need("slice_p", 1, "optax.contrib.prodigy has no slice_p"),
            need("weight_decay_mode", "decoupled", "optax.contrib.prodigy's decay is AdamW-style "
                 "(decoupled)") if hp.get("weight_decay", 0.0) else None]


def _prodigy_build(case, params: dict, schedule, jit: bool) -> dict:
    """optax.contrib.prodigy over the dict of every parameter (its sums run over the tree)."""
    from optax import contrib

    hp = Given(case.param_hparams(next(iter(params))))
    beta3 = hp["beta3"]
    tx = contrib.prodigy(hp["lr"] if schedule is None else schedule, **present(dict(
        betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], estim_lr0=hp["d0"],
        estim_lr_coef=hp["d_coef"], weight_decay=hp["weight_decay"],
        safeguard_warmup=hp["safeguard_warmup"],
        beta3=None if beta3 == -1.0 or beta3 is ABSENT else beta3)))
    return _whole_model_handle(tx, params, jit, case)


def _whole_model_handle(tx, params: dict, jit: bool, case) -> dict:
    """One optax transformation over the dict of every parameter (its sums run over the
    tree), jitted or not."""
    import jax

    def update(params, state, grads):
        u, state = tx.update(grads, state, params)
        return {k: params[k] + u[k] for k in params}, state

    return {"params": params, "states": tx.init(params),
            "update": jax.jit(update) if jit else update, "dtype": case.dtype,
            "optimizer": case.optimizer}


def _whole_model_fields(state, names) -> dict:
    """Each parameter's share of optax's ProdigyState or DAdaptAdamWState (estim_lr is d;
    neither keeps d_max; Prodigy's also has params0, our p0)."""
    d, r = float(np.asarray(state.estim_lr)), float(np.asarray(state.numerator_weighted))
    p0 = getattr(state, "params0", None)
    return {k: {"mu": np.asarray(state.exp_avg[k]), "nu": np.asarray(state.exp_avg_sq[k]),
                "s": np.asarray(state.grad_sum[k]),
                **({} if p0 is None else {"p0": np.asarray(p0[k])}),
                "d": d, "d_numerator": r, "count": int(np.asarray(state.count))}
            for k in names}
# ---- D-Adapt AdamW (optax/contrib/_dadapt_adamw.py dadapt_adamw): as Prodigy ---------------


def _dadapt_adamw_why_not(hp, need) -> list:
    return [need("bias_correction", True, "optax.contrib.dadapt_adamw always applies Adam's "
                 "bias correction in dlr"),
            need("growth_rate", float("inf"), "optax.contrib.dadapt_adamw has no growth_rate"),
            need("weight_decay_mode", "decoupled", "optax.contrib.dadapt_adamw's decay is "
                 "AdamW-style (decoupled)") if hp.get("weight_decay", 0.0) else None]


def _dadapt_adamw_build(case, params: dict, schedule, jit: bool) -> dict:
    from optax import contrib

    hp = Given(case.param_hparams(next(iter(params))))
    tx = contrib.dadapt_adamw(hp["lr"] if schedule is None else schedule, **present(dict(
        betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], estim_lr0=hp["d0"],
        weight_decay=hp["weight_decay"])))
    return _whole_model_handle(tx, params, jit, case)



_WHOLE_MODEL = {"prodigy": (_prodigy_build, _whole_model_fields),
                "dadapt_adamw": (_dadapt_adamw_build, _whole_model_fields)}
# ---- Muon: optax.contrib.muon (optax/contrib/_muon.py scale_by_muon, scale_by_shape, muon) ----
# scale_by_muon: the EMA with Adam's bias correction, NAdam-style Nesterov (or m_hat), the
# iteration in the parameter dtype on x/(||x||_F + eps) (finding M3); scale_by_shape:
# sqrt(max(1, fan_out/fan_in)) with the in x out layout (reduction_axis=0: finding M2), the
# out x in one via MuonDimensionNumbers(reduction_axis=1, output_axis=0), or consistent_rms;
# then add_decayed_weights and the lr: p - lr (r O + wd p) (decoupled, multiplied by lr).
_MUON_NESTEROV = {"nadam": True, "none": False}


def _muon_why_not(hp, need, dtype: str) -> list:
    ns = hp.get("ns_dtype", "param")
    return [
        need("momentum_form", "ema_bias_corrected", "optax.contrib.muon's buffer is the EMA "
             "read with Adam's bias correction"),
        None if hp.get("nesterov", "nadam") in _MUON_NESTEROV else
        "optax.contrib.muon's Nesterov is the NAdam-style bias-corrected form (or none)",
        None if {"param": dtype}.get(ns, ns) == dtype else
        f"optax.contrib.muon iterates in the parameter dtype ({dtype}), not {ns}",
        None if hp.get("norm_precision", "ns_dtype") == "ns_dtype" or dtype == "float32" else
        "optax.contrib.muon's Frobenius norm is in the parameter dtype",
        need("eps_form", "add", "optax.contrib.muon divides by ||x||_F + eps"),
        need("shape_scale", "fan_ratio", "optax.contrib.muon scales by the fan ratio or "
             "consistent_rms") if hp.get("shape_scale") == "none" else None,
    ]


def _muon_transform(hp, lr):
    from optax import contrib

    dims = ABSENT
    if hp["shape_scale"] in ("fan_ratio", ABSENT) and hp["layout"] == "out_in":
        dims = contrib.MuonDimensionNumbers(reduction_axis=1, output_axis=0)
    coeffs = (hp["ns_a"], hp["ns_b"], hp["ns_c"])
    return contrib.muon(lr, **present(dict(
        ns_coeffs=coeffs, ns_steps=hp["ns_steps"], beta=hp["momentum"], eps=hp["eps"],
        weight_decay=hp["weight_decay"],
        nesterov=_MUON_NESTEROV.get(hp["nesterov"], ABSENT),
        consistent_rms=hp["rms_scale"] if hp["shape_scale"] == "rms" else ABSENT,
        muon_weight_dimension_numbers=dims)))


def _muon_state(state) -> dict:
    """mu and count of the MuonState inside optax.contrib.muon's partition state (its 'adam'
    branch holds masked-out placeholders for a 2-D parameter)."""
    if hasattr(state, "ns_coeffs") and hasattr(state, "mu"):
        return {"mu": np.asarray(state.mu), "count": int(np.asarray(state.count))}
    parts = state.values() if isinstance(state, dict) else (
        state if isinstance(state, (tuple, list)) else ())
    for x in parts:
        out = _muon_state(x)
        if out:
            return out
    return {}
