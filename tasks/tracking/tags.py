"""Every MLflow tag (and run-metadata key) fuseflow writes or reads, in one place: what MLflow's UI and search see.

Constants are full tag names; the few families keyed by a name (`cache.<step>`, `fusion.member.<name>.run_id`)
are functions. Changing a value here changes what already-logged runs are searched by: don't, unless on purpose.
"""
from __future__ import annotations

# --- every pipeline run
PIPELINE = "fuseflow.pipeline"  # the pipeline's name
CONFIG_HASH = "fuseflow.config_hash"  # hash of the resolved config that shapes the result
ERROR = "fuseflow.error"  # why a run FAILED (or was KILLED)
VERSIONS = "fuseflow.versions"  # JSON of the library versions the run used
OVERRIDES = "fuseflow.overrides"  # JSON of the --set / deployment overrides
RERUN_OF = "fuseflow.rerun_of"  # the run a `fuseflow rerun` reproduces
HOST = "fuseflow.host"  # host and pid of the process that runs it, so --resume tells a crash from a live run
PID = "fuseflow.pid"
PROCESS_STARTED = "fuseflow.process_started"  # that process' start time: a pid the system reused is not it
RESUMED = "fuseflow.resumed"  # how many times --resume reopened it
OPEN_TOKEN = "fuseflow.open_token"  # a random id given at creation: a copy made by a retried request carries it too
FLOW_RUN_ID = "prefect.flow_run_id"
FLOW_RUN_URL = "prefect.flow_run_url"
DEPLOYMENT = "prefect.deployment"
#: MLflow's own: the run's description (markdown) in the UI, and the git commit
NOTE = "mlflow.note.content"
GIT_COMMIT = "mlflow.source.git.commit"

# --- step cache
CACHE_PREFIX = "fuseflow.cache."
REUSED_RUN = "fuseflow.reused_run_id"  # the run that trained the reused result (or, whole-run reuse, made it all)
RUN_CACHE = "fuseflow.cache.run"  # reused: an unchanged rerun copied every output of REUSED_RUN; else computed
RUN_CACHE_REASON = "fuseflow.cache.run.reason"  # why (which part of the whole-run key changed)
TOKENIZE_CACHE = "fuseflow.tokenize_cache"  # per split: tokens reused or computed

# --- registry and promotion
REGISTERED_MODEL = "fuseflow.registered_model"
PROMOTION = "fuseflow.promotion"

# --- distributed training
WORLD_SIZE = "fuseflow.distributed.world_size"
DISTRIBUTED_BACKEND = "fuseflow.distributed.backend"

# --- fusion (the parent run) and its members (nested runs)
FUSION_PREFIX = "fuseflow.fusion"
FUSION_METHOD = f"{FUSION_PREFIX}.method"
FUSION_MEMBERS = f"{FUSION_PREFIX}.members"
FUSION_MEMBER = f"{FUSION_PREFIX}.member"  # on member runs: the member's name in the fusion
FUSION_SHIPPED = f"{FUSION_PREFIX}.shipped"
FUSION_BEST_MEMBER = f"{FUSION_PREFIX}.best_member"
FUSION_GAIN = f"{FUSION_PREFIX}.gain_on_validation"
FUSION_NOTE = f"{FUSION_PREFIX}.note"
FUSION_SOURCE_URI = f"{FUSION_PREFIX}.source_uri"  # on the nested run of a `model:` member
FUSION_SOURCE_RUN_ID = f"{FUSION_PREFIX}.source_run_id"

# --- sweeps (the parent run) and their trials (nested runs)
SWEEP_PREFIX = "fuseflow.sweep"
SWEEP_TRIAL = f"{SWEEP_PREFIX}.trial"  # on trial runs: the trial's index
SWEEP_VALUES = f"{SWEEP_PREFIX}.values"  # on trial runs: JSON of the trial's parameter values
SWEEP_METRIC = f"{SWEEP_PREFIX}.metric"
SWEEP_MODE = f"{SWEEP_PREFIX}.mode"
SWEEP_SEARCH = f"{SWEEP_PREFIX}.search"  # the sampler: grid, random, tpe, cmaes, gp
SWEEP_PRUNER = f"{SWEEP_PREFIX}.pruner"
SWEEP_STUDY = f"{SWEEP_PREFIX}.study"  # the Optuna study's name
SWEEP_STORAGE = f"{SWEEP_PREFIX}.storage"  # the study's database URL (password masked)
SWEEP_TRIAL_STATE = f"{SWEEP_PREFIX}.trial_state"  # on trial runs: finished, pruned or failed
SWEEP_PRUNED_EPOCH = f"{SWEEP_PREFIX}.pruned_after_epoch"  # on pruned trial runs
SWEEP_TRIALS = f"{SWEEP_PREFIX}.trials"
SWEEP_RUNNER = f"{SWEEP_PREFIX}.runner"
SWEEP_BEST_TRIAL = f"{SWEEP_PREFIX}.best_trial"
SWEEP_BEST_RUN_ID = f"{SWEEP_PREFIX}.best_run_id"
SWEEP_FUSED_TRIALS = f"{SWEEP_PREFIX}.fused_trials"

# --- not tags, but metadata other tools read
DATASET_SOURCE = "fuseflow.source"  # the dataset input's source tag (sklearn:digits, csv:path, hub:name)
MODEL_CLASSES = "fuseflow.classes"  # a logged transformers model's class names (MLmodel metadata)


def cache_step(step: str) -> str:
    """`fuseflow.cache.<step>`: cached or computed."""
    return f"{CACHE_PREFIX}{step}"


def cache_reason(step: str) -> str:
    """`fuseflow.cache.<step>.reason`: why (which part of the key changed)."""
    return f"{CACHE_PREFIX}{step}.reason"


def fusion_member_run(member: str) -> str:
    """`fuseflow.fusion.member.<name>.run_id` on the fusion run: the run that trained (or logged) the member."""
    return f"{FUSION_MEMBER}.{member}.run_id"
