"""Training configuration: defaults, merged with a TOML file, then ``--set key=value`` overrides.

The resolved configuration is a nested dict of plain values, saved beside the checkpoints as
``config.json``. Sections:

``task``, ``seed``, ``out``
    The task (``intra``, ``inter``, ``stqs``), the seed of everything random, the output folder
    (default ``runs/<config file name>``).
``[data]``
    ``spec`` (render spec name or file), ``nights`` (a Sleep-EDF/NSRR folder, a ``.csv`` list, or
    an array of ``{psg, hypnogram, subject}`` tables; the cache is (re)built from them), ``layout``,
    ``cache_dir`` (default ``cache/<spec>``), ``split`` (a split file or committed split name; none:
    a seeded split by subject with ``split_fractions`` / ``split_seed``), ``trim_wake_min``,
    ``skip_bad``, ``augment_copies`` (augmented copies of each training night, 0: none; see
    :mod:`training.augment`) and ``augment_seed``, ``store`` (what the cache keeps: ``images``,
    rendered epochs; ``signals``, int16 conditioned signals rendered on the fly, byte-identical;
    ``columns``, only what the renderer reads of them, no STQS input; see
    :mod:`training.signal_cache`).
``[model]``
    ``preset`` (a :func:`edge_scorer.inference.nets.list_models` name); every other key
    overrides a field of the preset's config (``depth = 1``, ``embed_dim = 32``).
``[train]``
    The shared loop (:mod:`training.trainer`): ``epochs``, ``batch_size``, ``lr``,
    ``weight_decay``, ``lr_schedule`` (``none``/``cosine``/``step``), ``warmup_steps``,
    ``step_epochs``, ``gamma``, ``grad_clip``, ``max_steps``, ``time_budget_min``,
    ``val_max_items``, ``threads`` (0: torch's default; on cores shared with other jobs use
    fewer, OpenMP threads crawl when oversubscribed), ``workers`` (DataLoader worker processes
    preparing batches; 0: a background thread), ``deterministic``, ``device`` (``auto``: CUDA
    when there is one; under ``torchrun`` one GPU per process), ``amp`` (bfloat16 autocast on
    CUDA). ``batch_size`` is the global batch: under ``torchrun`` the processes share it.
``[intra]``, ``[inter]``, ``[stqs]``
    Task options: ``imbalance`` (``none``, ``class_weighted``, ``balanced`` sampling; ``oversample``
    is the same as ``balanced``), LineMix (``linemix_prob``, ``band_px``), sequence lengths, the
    intra checkpoint the inter model reads features from.

Relative paths are relative to the current folder (split names are also looked up among the
committed splits in ``training/splits``).
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from training._paths import find_named

__all__ = ["CONFIG_DIR", "DEFAULTS", "TASKS", "apply_override", "find_config", "load_config",
           "parse_value", "save_config"]

#: Folder of the shipped configuration files.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TASKS: tuple[str, ...] = ("intra", "inter", "stqs")
IMBALANCE = ("none", "class_weighted", "balanced", "oversample")

DEFAULTS: dict = {
    "task": "intra",
    "seed": 0,
    "out": None,
    "data": {
        "spec": "sleep-edf",
        "nights": None,
        "layout": "auto",
        "cache_dir": None,
        "split": None,
        "split_fractions": [0.7, 0.15, 0.15],
        "split_seed": 0,
        "trim_wake_min": 30.0,
        "skip_bad": False,
        "augment_copies": 0,
        "augment_seed": 0,
        "store": "images",
    },
    "model": {"preset": "vit_tiny"},
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "lr": 3e-4,
        "weight_decay": 0.05,
        "lr_schedule": "cosine",
        "warmup_steps": 0,
        "step_epochs": 5,
        "gamma": 0.5,
        "grad_clip": 1.0,
        "max_steps": 0,
        "time_budget_min": 0.0,
        "val_max_items": 0,
        "threads": 0,
        "workers": 0,
        "deterministic": True,
        "device": "auto",
        "amp": False,
    },
    "intra": {"imbalance": "class_weighted", "linemix_prob": 0.5, "band_px": 16},
    "inter": {"imbalance": "none", "intra_checkpoint": None, "seq_len": 10,
              "feature_batch_size": 128},
    "stqs": {"imbalance": "class_weighted", "seq_len": 8},
}

#: Per-task defaults laid over :data:`DEFAULTS` before the file.
TASK_DEFAULTS: dict[str, dict] = {
    "intra": {},
    "inter": {"model": {"preset": "inter_tiny"},
              "train": {"batch_size": 256, "lr": 1e-4, "weight_decay": 1e-8}},
    "stqs": {"model": {"preset": "stqs"}, "train": {"batch_size": 16, "lr": 1e-3,
                                                    "weight_decay": 1e-4}},
}
#: Data recipes (``--recipe``): the data section of a dataset, laid over the config file.
#: ``out`` and the inter model's intra checkpoint become ``runs/<task>-<recipe>``.
RECIPES: dict[str, dict] = {
    "sleep-edf": {"data": {"spec": "sleep-edf", "nights": "data/sleep-edf", "layout": "sleep-edf",
                           "split": "sleep-edf-sc", "cache_dir": "cache/sleep-edf",
                           "store": "images"}},
    "shhs": {"data": {"spec": "shhs", "nights": "data/shhs", "layout": "nsrr", "split": None,
                      "cache_dir": "cache/shhs", "store": "signals"}},
}
_FREE_SECTIONS = ("model",)  # keys not validated here (model config fields)


def _merge(base: dict, extra: Mapping, where: str, path: str = "") -> None:
    for key, value in extra.items():
        full = f"{path}{key}"
        if path.rstrip(".") in _FREE_SECTIONS:
            base[key] = value
            continue
        if key not in base:
            raise ValueError(f"{where}: unknown config key {full!r}; valid keys here are "
                             f"{sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: {full!r} is a section; write [{full}] with keys "
                                 f"{sorted(base[key])}")
            _merge(base[key], value, where, full + ".")
        else:
            base[key] = _coerce(base[key], value, full, where)


def _coerce(default, value, key: str, where: str):
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, list) and not isinstance(value, list):
        raise ValueError(f"{where}: {key} must be an array like {default!r}, got {value!r}")
    return value


def parse_value(text: str):
    """A ``--set`` value: TOML syntax (``1e-3``, ``true``, ``[0.7, 0.15, 0.15]``, ``"x"``), or
    the text itself when it is not TOML (``data/nights``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``key.sub=value`` override in place.

    Raises
    ------
    ValueError
        Malformed item or unknown key.
    """
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-3")
    key, text = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError(f"--set {item!r}: empty key")
    nested: dict = {}
    node = nested
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = parse_value(text.strip())
    _merge(cfg, nested, f"--set {key.strip()}")


def find_config(name_or_path: str | Path) -> Path:
    """A config file by path, or a shipped one by name (``intra_vit_tiny``).

    Raises
    ------
    FileNotFoundError
        Neither exists.
    """
    return find_named(name_or_path, CONFIG_DIR, ".toml", "config")


def _validate(cfg: dict) -> None:
    if cfg["task"] not in TASKS:
        raise ValueError(f"task {cfg['task']!r} unknown; use one of {list(TASKS)}")
    t = cfg["train"]
    if t["lr_schedule"] not in ("none", "cosine", "step"):
        raise ValueError(f"train.lr_schedule {t['lr_schedule']!r}: use none, cosine or step")
    for key in ("epochs", "batch_size"):
        if t[key] < 1:
            raise ValueError(f"train.{key} must be at least 1, got {t[key]}")
    if t["workers"] < 0:
        raise ValueError(f"train.workers must be 0 or more, got {t['workers']}")
    if t["lr"] <= 0:
        raise ValueError(f"train.lr must be positive, got {t['lr']}")
    for task in TASKS:
        if cfg[task]["imbalance"] not in IMBALANCE:
            raise ValueError(f"{task}.imbalance {cfg[task]['imbalance']!r}: use one of "
                             f"{list(IMBALANCE)}")
    if cfg["data"]["store"] not in ("images", "signals", "columns"):
        raise ValueError(f"data.store {cfg['data']['store']!r}: use images, signals or columns")
    if cfg["data"]["augment_copies"] < 0:
        raise ValueError(f"data.augment_copies must be 0 or more, got "
                         f"{cfg['data']['augment_copies']}")
    if not 0.0 <= cfg["intra"]["linemix_prob"] <= 1.0:
        raise ValueError("intra.linemix_prob must lie in [0, 1]")
    if "preset" not in cfg["model"]:
        raise ValueError("[model] needs a preset (e.g. preset = \"vit_tiny\")")


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    task: str | None = None,
    recipe: str | None = None,
) -> dict:
    """Resolve a configuration: defaults, task defaults, the file, a recipe, then overrides.

    Parameters
    ----------
    path : path-like, optional
        TOML file (or a shipped config name). Its ``task`` must agree with ``task``.
    overrides : iterable of str
        ``key.sub=value`` items (the CLI's ``--set``).
    task : str, optional
        ``intra``, ``inter`` or ``stqs`` (the CLI's positional argument).
    recipe : str, optional
        A :data:`RECIPES` name (``sleep-edf``, ``shhs``): its data section replaces the file's,
        ``out`` becomes ``runs/<task>-<recipe>`` and ``inter.intra_checkpoint``
        ``runs/intra-<recipe>``.

    Returns
    -------
    dict
        The resolved configuration; ``cfg["config_file"]`` names the file.
    """
    file_data: dict = {}
    where = "defaults"
    if path is not None:
        p = find_config(path)
        where = str(p)
        try:
            file_data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{p}: not valid TOML ({exc})") from None
    file_task = file_data.get("task")
    if task is not None and file_task is not None and file_task != task:
        raise ValueError(f"{where} is a {file_task!r} config but the {task!r} task was asked "
                         f"for; use a {task} config (e.g. training/configs/)")
    task = task or file_task or DEFAULTS["task"]
    if task not in TASKS:
        raise ValueError(f"task {task!r} unknown; use one of {list(TASKS)}")
    cfg = copy.deepcopy(DEFAULTS)
    cfg["task"] = task
    for section, values in TASK_DEFAULTS[task].items():
        cfg[section].update(copy.deepcopy(values))
    if "model" in file_data and "preset" in file_data["model"]:
        cfg["model"] = {}  # the file's model section replaces the task default's overrides
    _merge(cfg, file_data, where)
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; use one of {sorted(RECIPES)}")
        _merge(cfg, copy.deepcopy(RECIPES[recipe]), f"recipe {recipe}")
        cfg["out"] = str(Path("runs") / f"{task}-{recipe}")
        cfg["inter"]["intra_checkpoint"] = str(Path("runs") / f"intra-{recipe}")
    cfg["recipe"] = recipe
    for item in overrides:
        apply_override(cfg, item)
    _validate(cfg)
    cfg["config_file"] = str(Path(where).resolve()) if path is not None else None
    if cfg["out"] is None:
        stem = Path(where).stem if path is not None else f"{task}"
        cfg["out"] = str(Path("runs") / stem)
    if cfg["data"]["cache_dir"] is None:
        cfg["data"]["cache_dir"] = str(Path("cache") / Path(str(cfg["data"]["spec"])).stem)
    return cfg


def save_config(cfg: dict, path: str | Path) -> Path:
    """Write the resolved configuration as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=2, default=str) + "\n")
    return path
