"""Sphinx extension: write the registry-driven pages before Sphinx reads the sources.

On ``builder-inited`` it writes, from :data:`adaptive_ref.REGISTRY`:

* ``docs/optimizers/<name>.md``: one page per registered optimizer (summary, paper, the update
  rule from the step function's docstring, the hyperparameter table, the torch/optax profiles side
  by side with their differences marked, the state fields);
* ``docs/optimizers/index.md``: the overview table and the toctree of those pages;
* ``docs/_generated/*.md``: tables that hand-written pages pull in with ``{include}``: the
  convention matrix, the full knob matrix and the backend capability table.

Everything here is derived from the code at build time, so a page cannot go stale; the generated
files are git-ignored. A file is rewritten only when its text changes, so incremental builds
stay incremental.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import textwrap
from typing import Any

__all__ = ["setup", "generate"]

# Optimizers of other issues (natural-gradient methods, second-order flavours, sparse variants)
# join the registry through ``registry.register`` when their module is imported, so every module
# of the package is imported first, except these (a CLI, the test helpers).
SKIP_MODULES = ("adaptive_ref.cli", "adaptive_ref.__main__", "adaptive_ref.conformance.__main__",
                "adaptive_ref.testing")

PROFILES = ("torch", "optax", "keras", "upstream")

# The conventions on which torch.optim, optax and Keras (and the papers) disagree, as
# (topic, optimizer, hyperparameter). Values come from the registry; a row whose optimizer or
# hyperparameter is missing from the registry is an error, so this list cannot rot silently.
CONVENTIONS: tuple[tuple[str, str, str], ...] = (
    ("eps placement", "adam", "eps_placement"),
    ("eps placement", "adam", "eps_root"),
    ("eps placement", "adagrad", "eps_placement"),
    ("eps placement", "adagrad", "eps"),
    ("eps placement", "rmsprop", "eps_placement"),
    ("eps placement", "adamax", "eps_placement"),
    ("eps-hat (eps on the uncorrected sqrt(v))", "radam", "eps_placement"),
    ("eps-hat (eps on the uncorrected sqrt(v))", "adam", "eps_placement"),
    ("weight-decay coupling", "adam", "weight_decay_mode"),
    ("weight-decay coupling", "nadam", "weight_decay_mode"),
    ("weight-decay coupling", "radam", "weight_decay_mode"),
    ("weight-decay coupling", "sgd", "weight_decay_mode"),
    ("weight-decay coupling", "adagrad", "weight_decay_mode"),
    ("weight-decay coupling", "rmsprop", "weight_decay_mode"),
    ("weight-decay coupling", "adamax", "weight_decay_mode"),
    ("precision of the scalar factors", "adam", "factor_precision"),
    ("precision of the scalar factors", "nadam", "factor_precision"),
    ("precision of the scalar factors", "radam", "factor_precision"),
    ("precision of the EMA weights 1 - beta", "nadam", "ema_weight_precision"),
    ("weight-decay scaling", "adamw", "decay_scaling"),
    ("weight-decay scaling", "adamw", "weight_decay"),
    ("NAdam momentum schedule", "nadam", "momentum_schedule"),
    ("NAdam momentum schedule", "nadam", "momentum_decay"),
    ("Adagrad initial accumulator", "adagrad", "initial_accumulator_value"),
    ("AMSGrad maximum", "amsgrad", "amsgrad_max_over"),
    ("RMSprop decay", "rmsprop", "alpha"),
    ("RMSprop lr placement", "rmsprop", "lr_placement"),
    ("RMSprop centring", "rmsprop", "centered"),
    ("RMSprop bias correction", "rmsprop", "bias_correction"),
    ("SGD lr placement", "sgd", "lr_placement"),
    ("SGD first-step dampening", "sgd", "dampen_first_step"),
    ("RAdam rectification threshold", "radam", "threshold"),
    ("RAdam rectification threshold", "radam", "threshold_inclusive"),
    ("default learning rate", "adam", "lr"),
    # issue 11: the newer family (optax and the authors' code: the "upstream" column)
    ("eps placement", "adopt", "eps_placement"),
    ("ADOPT clipping s^(1/4)", "adopt", "clipping"),
    ("ADOPT clipping s^(1/4)", "adopt", "clip_index"),
    ("precision of the EMA weights 1 - beta", "adopt", "ema_weight_precision"),
    ("AdaBelief rectification", "adabelief", "rectify"),
    ("eps-hat (eps on the uncorrected sqrt(v))", "adabelief", "eps_placement"),
    ("weight-decay coupling", "adabelief", "weight_decay_mode"),
    ("precision of the scalar factors", "adabelief", "factor_precision"),
    ("default learning rate", "adadelta", "lr"),
    ("Adadelta decay rate", "adadelta", "rho"),
    ("Adadelta eps", "adadelta", "eps"),
    ("weight-decay coupling", "adadelta", "weight_decay_mode"),
    ("precision of the EMA weights 1 - beta", "lion", "ema_weight_precision"),
    ("Lion weight decay (decoupled)", "lion", "weight_decay"),
    ("schedule-free warm-up index", "schedule_free_adamw", "warmup_lag"),
    ("schedule-free warm-up index", "schedule_free_adamw", "warmup_precision"),
    ("schedule-free averaging weights", "schedule_free_adamw", "averaging"),
    ("schedule-free weight decay", "schedule_free_adamw", "weight_decay_form"),
)


# --------------------------------------------------------------------------------------------
# Small formatting helpers


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|{}$#~])")


def md_text(s: str) -> str:
    """Plain text made safe inside a Markdown table cell (no emphasis, no pipes, no roles)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(s).split()))


def value_text(v: Any) -> str:
    """A hyperparameter value as inline code; REQUIRED and absent values in words."""
    from adaptive_ref._spec import REQUIRED

    if v is REQUIRED:
        return "required (no default)"
    if v is _ABSENT:
        return "(not set)"
    if isinstance(v, float):
        if math.isinf(v):
            return "`inf`" if v > 0 else "`-inf`"
        text = repr(v)
    else:
        text = repr(v)
    return f"`{text}`"


class _Absent:
    def __repr__(self) -> str:
        return "(not set)"


_ABSENT = _Absent()


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (True is not 1; 0.0 equals 0)."""
    if a is b:
        return True
    if isinstance(a, (_Absent, type(None))) or isinstance(b, (_Absent, type(None))):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def profile_value(spec, profile: str, name: str) -> Any:
    """The value ``name`` takes under ``profile``: the profile's setting, else the default."""
    prof = spec.profiles.get(profile)
    if prof is None:
        return _ABSENT
    if name in prof.settings:
        return prof.settings[name]
    if name in spec.fixed:
        return spec.fixed[name]
    return spec.hparam(name).default


def reference_value(spec, name: str) -> Any:
    return spec.fixed.get(name, spec.hparam(name).default)


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _docstring_body(func) -> str:
    """The step function's docstring without its first (summary) line, dedented (reST)."""
    doc = inspect.getdoc(func) or ""
    lines = doc.splitlines()
    return textwrap.dedent("\n".join(lines[1:])).strip("\n")


def _first_line(func) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.splitlines()[0] if doc else ""


def _public_name(func) -> str:
    """``adaptive_ref.<name>`` when the package re-exports ``func``, else its module path."""
    import adaptive_ref

    name = func.__name__
    if getattr(adaptive_ref, name, None) is func:
        return f"adaptive_ref.{name}"
    return f"{func.__module__}.{name}"


# --------------------------------------------------------------------------------------------
# Page generators


def registry():
    """The registry after importing every module of the package (so all optimizers register)."""
    import pkgutil

    import adaptive_ref
    from adaptive_ref.registry import REGISTRY

    for mod in pkgutil.walk_packages(adaptive_ref.__path__, "adaptive_ref."):
        if mod.name.startswith(SKIP_MODULES):
            continue
        importlib.import_module(mod.name)
    return REGISTRY


def optimizer_page(spec) -> str:
    step, init = spec.step, spec.init
    parts = [f"# {spec.title} (`{spec.name}`)\n"]
    parts.append(f"{md_text(spec.summary)}\n")
    parts.append(f"**Paper.** {md_text(spec.paper)}\n")
    parts.append(
        f"**Functions.** {{py:func}}`{_public_name(init)}` makes the state, "
        f"{{py:func}}`{_public_name(step)}` takes one step; the state is a "
        f"`{spec.state_type.__name__}`. Element-wise: {'yes' if spec.elementwise else 'no'}.\n")
    if spec.fixed:
        fixed = ", ".join(f"`{k}={v!r}`" for k, v in spec.fixed.items())
        parts.append(f"**Fixed settings.** This entry is `{step.__name__}` with {fixed}.\n")

    parts.append("## Update rule\n")
    parts.append(f"From the docstring of `{step.__name__}` ({md_text(_first_line(step))}):\n")
    body = _docstring_body(step)
    parts.append("```{eval-rst}\n" + body + "\n```\n")

    parts.append("## Hyperparameters\n")
    parts.append(
        "Reference defaults are the paper's where the paper gives one. *Knob* marks a convention "
        "switch on which frameworks or papers differ; *init* marks a setting that decides the "
        f"state layout, so `{init.__name__}` takes it too.\n")
    rows = []
    for h in spec.hparams:
        rows.append([
            f"`{h.name}`", value_text(reference_value(spec, h.name)), md_text(h.range_text()),
            md_text(h.meaning), "knob" if h.knob else "", "init" if h.init else ""])
    parts.append(table(["name", "default", "range", "meaning", "knob", "init"], rows))

    parts.append("## Framework profiles\n")
    present = [p for p in PROFILES if p in spec.profiles]
    others = [p for p in spec.profiles if p not in PROFILES]
    cols = present + others
    if not cols:
        parts.append("The registry gives this entry no framework profile, so only the reference "
                     "defaults above apply.\n")
    else:
        parts.append(
            "`spec.settings(profile)` starts from the reference defaults and applies the "
            "profile, so the reference reproduces that framework's optimizer. Rows where the "
            "profiles disagree are marked **differs** and their values are in bold; a value "
            "that differs from the reference default is marked with a dagger (†). "
            "*required (no default)* means the framework's constructor has no default "
            "(optax: every learning rate).\n")
        rows = []
        for h in spec.hparams:
            from adaptive_ref._spec import REQUIRED

            ref = reference_value(spec, h.name)
            vals = [profile_value(spec, p, h.name) for p in cols]
            differs = any(not _same(vals[0], v) for v in vals[1:])
            cells = []
            for v in vals:
                text = value_text(v)
                if not _same(v, ref) and v is not REQUIRED:
                    text += " †"
                cells.append(f"**{text}**" if differs else text)
            rows.append([f"`{h.name}`", value_text(ref), *cells,
                         "**differs**" if differs else ""])
        parts.append(table(["name", "reference", *cols, ""], rows))
        for p in cols:
            prof = spec.profiles[p]
            note = f" {md_text(prof.notes)}" if prof.notes else ""
            parts.append(f"- **{p}**: read from {md_text(prof.source)}.{note}\n")
        parts.append("")

    parts.append("## State\n")
    state_doc = inspect.getdoc(spec.state_type) or ""
    parts.append(f"`{spec.state_type.__name__}` fields: "
                 + ", ".join(f"`{f}`" for f in spec.state_type._fields) + ".\n")
    if state_doc and not state_doc.startswith(spec.state_type.__name__ + "("):
        parts.append("```text\n" + state_doc + "\n```\n")

    parts.append("## Calling it\n")
    parts.append(calling_it(spec))
    return "\n".join(parts)


def calling_it(spec) -> str:
    """A snippet that runs one step through the registry; a doctest when it runs here."""
    profile = "torch" if "torch" in spec.profiles else None
    init_kw = [h.name for h in spec.hparams if h.init]
    lines = [
        ">>> import numpy as np",
        ">>> from adaptive_ref import get",
        f'>>> spec = get("{spec.name}")',
        (f'>>> settings = spec.settings("{profile}")   # the {profile} profile'
         if profile else ">>> settings = spec.settings()          # the reference defaults"),
        ">>> param, grad = np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.1, 0.0])",
        ">>> state = spec.init(param, **spec.init_kwargs(settings))"
        + (f"   # init knobs: {', '.join(init_kw)}" if init_kw else ""),
        ">>> new_param, new_state = spec.step(param, grad, state, **settings)",
        ">>> new_param.shape, new_param.dtype, int(new_state.count)",
        "((3,), dtype('float64'), 1)",
    ]
    try:  # the snippet becomes a doctest only if it runs as written
        import numpy as np

        settings = spec.settings(profile) if profile else spec.settings()
        param = np.array([1.0, -2.0, 0.5])
        state = spec.init(param, **spec.init_kwargs(settings))
        out, st = spec.step(param, np.array([0.3, -0.1, 0.0]), state, **settings)
        ok = out.shape == (3,) and out.dtype == np.float64 and int(st.count) == 1
    except Exception:
        ok = False
    if ok:
        return "```{doctest}\n" + "\n".join(lines) + "\n```\n"
    code = [ln[4:] for ln in lines[:-2]]
    return ("This optimizer needs settings that have no default; fill them in:\n\n"
            "```python\n" + "\n".join(code) + "\n```\n")


def optimizers_index(reg) -> str:
    parts = ["# Optimizers\n",
             "One page per entry of `adaptive_ref.REGISTRY`, generated from the registry when "
             "these docs are built. The knobs column lists the convention switches.\n"]
    rows = []
    for name, spec in reg.items():
        knobs = ", ".join(f"`{h.name}`" for h in spec.knobs) or ""
        profs = ", ".join(spec.profiles) or "none"
        rows.append([f"[{md_text(spec.title)}]({name}.md)", md_text(spec.summary), knobs,
                     md_text(profs)])
    parts.append(table(["optimizer", "summary", "knobs", "profiles"], rows))
    parts.append("```{toctree}\n:hidden:\n:maxdepth: 1\n\n"
                 + "\n".join(reg) + "\n```\n")
    return "\n".join(parts)


def convention_matrix(reg) -> str:
    rows = []
    for topic, name, hp in CONVENTIONS:
        spec = reg[name]
        h = spec.hparam(hp)  # KeyError if the registry lost this knob
        ref = reference_value(spec, hp)
        vals = [profile_value(spec, p, hp) for p in PROFILES]
        present = [v for v in vals if v is not _ABSENT]
        differs = len(present) > 1 and any(not _same(present[0], v) for v in present[1:])
        cells = [f"**{value_text(v)}**" if differs else value_text(v) for v in vals]
        rows.append([md_text(topic), f"[{name}](optimizers/{name}.md)", f"`{hp}`",
                     value_text(ref), *cells, "**differs**" if differs else "",
                     md_text(h.meaning)])
    return table(["convention", "optimizer", "knob", "reference", *PROFILES, "", "meaning"],
                 rows)


def knob_matrix(reg) -> str:
    """Every knob of every registered optimizer, and every number the profiles disagree on."""
    rows = []
    for name, spec in reg.items():
        for h in spec.hparams:
            vals = [profile_value(spec, p, h.name) for p in PROFILES]
            present = [v for v in vals if v is not _ABSENT]
            differs = len(present) > 1 and any(not _same(present[0], v) for v in present[1:])
            if not (h.knob or differs):
                continue
            choices = md_text(h.range_text())
            cells = [f"**{value_text(v)}**" if differs else value_text(v) for v in vals]
            rows.append([f"[{name}](optimizers/{name}.md)", f"`{h.name}`", choices,
                         value_text(reference_value(spec, h.name)), *cells,
                         "**differs**" if differs else ""])
    return table(["optimizer", "knob", "values", "reference", *PROFILES, ""], rows)


def _backend_row(backend) -> list[str]:
    from adaptive_ref import _numerics as nx

    reason = backend.missing_reason()
    if reason is not None:
        return [f"`{backend.value}`", "no", md_text(reason), "", "", "", ""]
    xp = backend.xp
    x = backend.asarray([1.0, 2.0], dtype="float32")
    info = xp.__array_namespace_info__()
    try:
        floats = info.dtypes(kind="real floating")
    except Exception:  # pragma: no cover - namespace without kind filtering
        floats = {}
    has64 = "float64" in floats
    default = info.default_dtypes()["real floating"]
    sdt = nx.scalar_dtype(xp, x, x.dtype)
    return [f"`{backend.value}`", "yes", md_text(getattr(xp, "__name__", str(xp))),
            "yes" if has64 else "**no**", md_text(str(default)), md_text(str(sdt)),
            md_text(str(nx.count_dtype(xp)))]


def backend_table() -> str:
    """Capabilities measured on the machine that builds the docs (JAX with and without x64)."""
    from adaptive_ref.testing.backends import Backend

    rows = []
    for b in Backend:
        if b is Backend.JAX and b.missing_reason() is None:
            import jax

            from adaptive_ref import _numerics as nx

            # The dtype look-ups are cached per namespace, and JAX's namespace object is the same
            # with x64 on and off: clear the caches around each switch (see backends.md).
            before = jax.config.read("jax_enable_x64")
            try:
                jax.config.update("jax_enable_x64", False)
                nx._scalar_dtype_cached.cache_clear()
                nx._count_dtype_cached.cache_clear()
                rows.append(_backend_row_jax())
                nx._scalar_dtype_cached.cache_clear()
                nx._count_dtype_cached.cache_clear()
                rows.append(_backend_row(b))  # Backend.setup() turns x64 on
                rows[-1][0] = "`jax` (x64 on, as the tests run it)"
            finally:
                jax.config.update("jax_enable_x64", before)
                nx._scalar_dtype_cached.cache_clear()
                nx._count_dtype_cached.cache_clear()
            continue
        rows.append(_backend_row(b))
    header = ["backend", "installed", "namespace", "float64", "default float",
              "scalar dtype of a float32 step", "count dtype"]
    return table(header, rows)


def _backend_row_jax() -> list[str]:
    import array_api_compat as aac
    import jax.numpy as jnp

    from adaptive_ref import _numerics as nx

    x = jnp.asarray([1.0, 2.0], dtype=jnp.float32)
    xp = aac.array_namespace(x)
    info = xp.__array_namespace_info__()
    floats = info.dtypes(kind="real floating")
    default = info.default_dtypes()["real floating"]
    return ["`jax` (x64 off, JAX's default)", "yes", md_text(xp.__name__),
            "yes" if "float64" in floats else "**no**", md_text(str(default)),
            md_text(str(nx.scalar_dtype(xp, x, x.dtype))), md_text(str(nx.count_dtype(xp)))]


# Pages written by hand in this directory's own toctree (docs/index.md), and directories that are
# not pages.
OWN_PAGES = ("index", "conventions", "backends", "figures", "api", "scaleout", "reliability")
NOT_PAGES = ("_build", "_generated", "_ext", "_static", "_templates", "optimizers", "figures",
             "tutorials")  # tutorials: in index.md's own toctree


def more_toctree(srcdir: str) -> str:
    """Toctrees for the pages other contributors add (derivations, conformance, performance, ...).

    A glob that matches nothing is a warning (an error under ``-W``), so each section's toctree
    is written only when its pages exist; new pages are then picked up by the globs.
    """
    def pages(d: str) -> list[str]:
        full = os.path.join(srcdir, d)
        if not os.path.isdir(full):
            return []
        return sorted(os.path.splitext(f)[0] for f in os.listdir(full)
                      if f.endswith((".md", ".rst")) and not f.startswith(("_", ".")))

    top = [p for p in pages(".") if p not in OWN_PAGES and p.upper() != "README"]
    sections: list[tuple[str, list[str]]] = []
    deriv = pages("derivations")
    if deriv:
        sections.append(("Derivations", ["derivations/index"] if "index" in deriv
                                        else ["derivations/*"]))
    conf = [p for p in top if p.startswith("conformance")]
    if conf:
        sections.append(("Conformance", ["conformance*"]))
    perf = [p for p in top if p.startswith("performance")]
    if perf:
        sections.append(("Performance", ["performance*"]))
    rest = [p for p in top if p not in conf and p not in perf]
    dirs = sorted(d for d in os.listdir(srcdir)
                  if os.path.isdir(os.path.join(srcdir, d)) and d not in NOT_PAGES
                  and d != "derivations" and not d.startswith(".") and pages(d))
    if rest or dirs:
        sections.append(("More", rest + [f"{d}/*" for d in dirs]))
    out = []
    for caption, entries in sections:
        out.append("```{toctree}\n:glob:\n:maxdepth: 2\n:caption: " + caption + "\n\n"
                   + "\n".join(entries) + "\n```\n")
    return "\n".join(out) if out else "\n"


# Modules api.md documents by hand (or that are not API).
API_DONE = ("adaptive_ref.optimizers", "adaptive_ref.registry", "adaptive_ref.tree",
            "adaptive_ref.state", "adaptive_ref.schedules", "adaptive_ref.cli",
            "adaptive_ref.__main__", "adaptive_ref.conformance.__main__",
            "adaptive_ref.testing.pytest_plugin")


def api_modules() -> str:
    """An ``automodule`` block for every public module that api.md does not document by hand."""
    import pkgutil

    import adaptive_ref

    names = []
    for mod in pkgutil.walk_packages(adaptive_ref.__path__, "adaptive_ref."):
        name = mod.name
        if any(part.startswith("_") for part in name.split(".")[1:]):
            continue
        if name.startswith(API_DONE):
            continue
        names.append(name)
    if not names:
        return "None at present.\n"
    blocks = []
    for name in sorted(names):
        # Members defined in the module only (not its __all__): a package that re-exports
        # its submodules' names would otherwise describe each object twice.
        blocks.append(f"### `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n"
                      "   :members:\n   :ignore-module-all:\n```\n")
    return "\n".join(blocks)


# --------------------------------------------------------------------------------------------
# Writing files


def _write(path: str, text: str, written: set[str]) -> None:
    written.add(os.path.abspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


HEADER = ("<!-- Generated by docs/_ext/registry_pages.py from adaptive_ref.REGISTRY at build "
          "time; do not edit, do not commit. -->\n\n")


def generate(srcdir: str) -> list[str]:
    """Write every generated page under ``srcdir``; return the paths written."""
    reg = registry()
    written: set[str] = set()
    opt_dir = os.path.join(srcdir, "optimizers")
    gen_dir = os.path.join(srcdir, "_generated")
    for name, spec in reg.items():
        _write(os.path.join(opt_dir, f"{name}.md"), HEADER + optimizer_page(spec), written)
    _write(os.path.join(opt_dir, "index.md"), HEADER + optimizers_index(reg), written)
    _write(os.path.join(gen_dir, "convention_matrix.md"), convention_matrix(reg), written)
    _write(os.path.join(gen_dir, "knob_matrix.md"), knob_matrix(reg), written)
    _write(os.path.join(gen_dir, "backend_table.md"), backend_table(), written)
    _write(os.path.join(gen_dir, "more_toctree.md"), more_toctree(srcdir), written)
    _write(os.path.join(gen_dir, "api_modules.md"), api_modules(), written)
    # Remove pages of optimizers that left the registry.
    for d in (opt_dir, gen_dir):
        for fname in os.listdir(d):
            path = os.path.abspath(os.path.join(d, fname))
            if fname.endswith(".md") and path not in written:
                os.remove(path)
    return sorted(written)


def _on_builder_inited(app) -> None:
    generate(app.srcdir)


_FIELD_LINE = re.compile(r"^(\w+):\s+(\S.*)$")


def state_fields_as_field_list(app, what, name, obj, options, lines) -> None:
    """Render a state NamedTuple's ``field: meaning`` lines as a reST field list.

    The state docstrings list their fields as aligned ``name:  text`` lines (readable in
    ``help()``); as reST those lines are one paragraph with an unexpected indentation. Turning
    each into ``:name: text`` keeps the source as it is and renders a field list.
    """
    if what != "class" or not (isinstance(obj, type) and issubclass(obj, tuple)
                               and hasattr(obj, "_fields")):
        return
    fields = set(obj._fields)
    out = []
    in_fields = False
    for line in lines:
        m = _FIELD_LINE.match(line)
        if m and m.group(1) in fields:
            if not in_fields and out and out[-1].strip():
                out.append("")
            out.append(f":{m.group(1)}: {m.group(2)}")
            in_fields = True
        elif in_fields and line.startswith(" ") and line.strip():
            out.append("   " + line.strip())
        else:
            if in_fields and line.strip():
                out.append("")
            in_fields = False
            out.append(line)
    lines[:] = out


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    app.connect("autodoc-process-docstring", state_fields_as_field_list)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
