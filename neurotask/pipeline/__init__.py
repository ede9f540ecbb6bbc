"""One configuration → the whole analysis: extract → ingest → rsa → encode → permute → partition → report.

A TOML file (or a dict of the same shape) names the inputs and, per step, the arguments of the
library function that step calls — the keys are those functions' argument names::

    out = "results"                      # every store and the report go here
    subjects = ["CSI1", "CSI2"]          # several subjects: task similarity averaged across them
    models = ["autoencoding", "depth_euclidean", "room_layout", "class_object"]

    [extract]                            # nt.extract_features(images, models, store, ...)
    images = "BOLD5000/Scene_Stimuli"
    weights = "taskonomy-weights/"
    [ingest]                             # nt.load_bold5000(root, subject, release, store, ...)
    root = "BOLD5000"
    [rsa]                                # nt.rsa.model_similarity(features, subset, ...) per subset
    subsets = { all = {}, scenes = { source = "scene" } }
    [encode]                             # nt.encoding.fit(features, responses, ...)
    test_sessions = [15]
    [permute]                            # nt.stats.permutation_test(results, responses, ...)
    n_permutations = 1000
    [partition]                          # nt.stats.variance_partition(features, responses, pairs, ...)
    pairs = [["autoencoding", "depth_euclidean"]]
    [cluster]                            # neurotask.cluster.get_client(...)
    scheduler = "tcp://login-node:8786"

The whole config is validated before anything is computed (:func:`validate`): unknown keys, keys
the pipeline sets itself, values of the wrong type or outside their choices fail with their key
(see :func:`reference` for every key). One run at a time per output folder (a lock file).
Each step writes its stores under ``out``; ``out/pipeline.json`` records which steps completed
with which settings, so a re-run skips them and resumes a step that was interrupted (the stores'
region writers skip written regions). Changing a step's settings recomputes it and what follows.

The submodules load on first use (``lazy_loader``, as the root package): the config reference
(``neurotask run --help``) and its errors come without the runner, the step table and the report.
"""

from __future__ import annotations

import lazy_loader

from neurotask.stores.layout import open_outputs, outputs

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=["config", "runner", "steps"],
    submod_attrs={
        "config": ["SECTIONS", "STEPS", "ConfigError", "load_config", "reference"],
        "runner": ["LockedError", "RunSummary", "client_from_config", "run"],
        "validate": ["validate"],
    },
)

__all__ = [
    "SECTIONS", "STEPS", "ConfigError", "LockedError", "RunSummary", "client_from_config", "load_config",
    "open_outputs", "outputs", "reference", "run", "validate",
]
