"""adaptive-ref: an executable reference for adaptive SGD methods on any array-API backend.

Each optimizer is a pair of pure functions, ``<name>_init(param) -> State`` and
``<name>_step(param, grad, state, *, hyperparameters) -> (param, state)``, written once against
the array API standard. :data:`REGISTRY` describes them all; :func:`make` applies one to a tree.
Importing this package imports no array backend.
"""

from . import schedules
from .optimize import OptimizeResult, minimize
from .optimizers.adafactor import AdafactorState, adafactor_init, adafactor_step
from .optimizers.adagrad import AdagradState, adagrad_init, adagrad_step
from .optimizers.adam import (
                              AdamState,
                              adam_init,
                              adam_step,
                              adamw_init,
                              adamw_step,
                              amsgrad_init,
                              amsgrad_step,
)
from .optimizers.adamax import AdamaxState, adamax_init, adamax_step
from .optimizers.full_matrix_adagrad import (
                              FullMatrixAdagradState,
                              full_matrix_adagrad_init,
                              full_matrix_adagrad_step,
)
from .optimizers.ivon import IVONState, ivon_init, ivon_sample, ivon_step
from .optimizers.muon import MuonState, muon_init, muon_step
from .optimizers.nadam import NAdamState, nadam_init, nadam_step
from .optimizers.radam import RAdamState, radam_init, radam_step
from .optimizers.rmsprop import RMSpropState, rmsprop_init, rmsprop_step
from .optimizers.rootfree import RootFreeState, rootfree_init, rootfree_step
from .optimizers.sgd import SGDState, sgd_init, sgd_step
from .optimizers.shampoo import ShampooState, shampoo_init, shampoo_step
from .optimizers.von import VONState, von_init, von_sample, von_step
from .registry import REGISTRY, get
from .state import state_from_dict, state_to_dict
from .tree import Group, Optimizer, make, tree_init, tree_step

__version__ = "0.1.0"

__all__ = [
    "AdagradState", "AdamState", "AdamaxState", "NAdamState", "RAdamState", "RMSpropState",
    "SGDState", "adagrad_init", "adagrad_step", "adam_init", "adam_step", "adamax_init",
    "adamax_step", "adamw_init", "adamw_step", "amsgrad_init", "amsgrad_step", "nadam_init",
    "nadam_step", "radam_init",
    "radam_step", "rmsprop_init", "rmsprop_step", "sgd_init", "sgd_step",
    "REGISTRY", "get", "make", "Optimizer", "Group", "tree_init", "tree_step",
    "state_to_dict", "state_from_dict", "schedules", "__version__",
    "VONState", "von_init", "von_step", "von_sample", "IVONState", "ivon_init", "ivon_step",
    "ivon_sample", "RootFreeState", "rootfree_init", "rootfree_step", "ShampooState",
    "shampoo_init", "shampoo_step", "FullMatrixAdagradState", "full_matrix_adagrad_init",
    "full_matrix_adagrad_step", "minimize", "OptimizeResult", "MuonState", "muon_init",
    "muon_step",
]
__all__ += ["AdafactorState", "adafactor_init", "adafactor_step"]

from .optimizers.schedule_free import (  # noqa: E402
                              ScheduleFreeState,
                              schedule_free_adamw_init,
                              schedule_free_adamw_step,
                              schedule_free_eval_params,
                              schedule_free_sgd_init,
                              schedule_free_sgd_step,
)
from .sparse import (  # noqa: E402
                              RowSparse,
                              lazy_adam_init,
                              lazy_adam_step,
                              rowwise_adagrad_init,
                              rowwise_adagrad_step,
                              sparse_adagrad_init,
                              sparse_adagrad_step,
)

__all__ += ["ScheduleFreeState", "schedule_free_adamw_init", "schedule_free_adamw_step",
            "schedule_free_sgd_init", "schedule_free_sgd_step", "schedule_free_eval_params"]

__all__ += ["RowSparse", "lazy_adam_init", "lazy_adam_step", "sparse_adagrad_init",
            "sparse_adagrad_step", "rowwise_adagrad_init", "rowwise_adagrad_step"]

# issue 11: the newer family
from .optimizers.adabelief import AdaBeliefState, adabelief_init, adabelief_step  # noqa: E402
from .optimizers.adadelta import AdadeltaState, adadelta_init, adadelta_step  # noqa: E402
from .optimizers.adan import AdanState, adan_init, adan_step  # noqa: E402
from .optimizers.adopt import AdoptState, adopt_init, adopt_step  # noqa: E402
from .optimizers.lion import LionState, lion_init, lion_step  # noqa: E402

__all__ += ["AdoptState", "adopt_init", "adopt_step", "AdaBeliefState", "adabelief_init",
            "adabelief_step", "AdanState", "adan_init", "adan_step", "AdadeltaState",
            "adadelta_init", "adadelta_step", "LionState", "lion_init", "lion_step"]

from .optimizers.soap import SoapState, soap_init, soap_step  # noqa: E402

__all__ += ["SoapState", "soap_init", "soap_step"]
# issue 12: a whole-model optimizer and the global reductions it (and clipping) are built on
from ._global import clip_by_global_norm  # noqa: E402
from .optimizers.prodigy import ProdigyState, prodigy_init, prodigy_step  # noqa: E402

__all__ += ["ProdigyState", "prodigy_init", "prodigy_step", "clip_by_global_norm"]
from .optimizers.dadapt_adamw import DAdaptAdamWState, dadapt_adamw_init, dadapt_adamw_step  # noqa: E402

__all__ += ["DAdaptAdamWState", "dadapt_adamw_init", "dadapt_adamw_step"]
